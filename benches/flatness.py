#!/usr/bin/env python3
"""Reads the results of `cargo bench --bench auction` and prints each operation's mean time at
1k, 10k and 100k bids with the 100k/1k ratio; exits 1 if any ratio exceeds 2 (not flat)."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion" / "auction"
sizes = ["1000", "10000", "100000"]
worst = 0.0
print(f"{'operation':30} {'1k':>10} {'10k':>10} {'100k':>10} {'100k/1k':>8}")
for op in ["place_bid", "delete_winning_bid", "read_item_with_winner", "http_get_item_winning_only"]:
    means = []
    for size in sizes:
        estimates = json.loads((root / op / size / "new" / "estimates.json").read_text())
        means.append(estimates["mean"]["point_estimate"])
    ratio = means[2] / means[0]
    worst = max(worst, ratio)
    cells = " ".join(f"{m / 1000:>8.2f}µs" for m in means)
    print(f"{op:30} {cells} {ratio:>7.2f}×")
sys.exit(0 if worst <= 2.0 else 1)
