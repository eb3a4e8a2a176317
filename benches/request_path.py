#!/usr/bin/env python3
"""Request-path speed and memory: monolith against a bare axum handler, in one run.

Starts the release monolith on the bundled data/ with its default settings (access log at `info`
to /dev/null, metrics and request ids on) and `benches/reference_server.rs` (a bare axum handler
answering static JSON, same tokio runtime and release profile), then drives both with wrk on
loopback: for each repetition and scenario, the reference and monolith back to back (their order
alternating between repetitions), so that both see the same machine. Scenarios: GET one book,
GET the bundled book list, GET an item with `complete=1`, POST a book, POST a bid.

It prints, per scenario, the median over the repetitions of req/s, p50 and p99 for each server,
and monolith's ratio to the reference, against the targets (GET one >= 80 % of the reference's
req/s, other GETs >= 70 %, POSTs >= 60 %, p99 <= 1.5x the reference's). Then memory and start-up:
monolith's idle RSS on the bundled data, the bytes each stored book costs beyond its text at
--books books, and the time from start to ready on that seed.

Exit 1 if any request fails, or, with --enforce-targets, if a target is missed. Python 3.11
standard library and wrk. Build both binaries first:

    cargo build --release --bin monolith --example reference_server
    python3 benches/request_path.py [--seconds 5] [--reps 3] [--books 1000000] [--enforce-targets]
"""
from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

from monolith_server import Server, ServerFailure

ROOT = pathlib.Path(__file__).resolve().parent.parent
PREFIX = "/api/v1"
# The item POST /bids bids on: created by the harness, so the bundled items' bid lists (read by
# the complete=1 scenario) keep their size.
BENCH_ITEM = "bench"

# name, method, path, JSON body, minimum ratio of the reference's req/s
SCENARIOS = [
    ("GET one book", "GET", f"{PREFIX}/books/1", None, 0.80),
    ("GET book list", "GET", f"{PREFIX}/books", None, 0.70),
    ("GET item complete=1", "GET", f"{PREFIX}/items/item1?complete=1", None, 0.70),
    ("POST book", "POST", f"{PREFIX}/books", {"title": "Bench", "author": "wrk"}, 0.60),
    ("POST bid", "POST", f"{PREFIX}/bids",
     {"bid": {"item": BENCH_ITEM, "value": 1.5, "user": "user1"}}, 0.60),
]
MAX_P99_RATIO = 1.5
BYTES_PER_BOOK_TARGET = 200
SEED_LOAD_TARGET_SECONDS = 1.0

# wrk reports through this: requests, seconds, errors and latency percentiles as one JSON line.
WRK_SCRIPT = """
wrk.method = %(method)s
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"seconds":%%f,"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d,'
    .. '"status_errors":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
"""


class Failure(Exception):
    """A run that cannot be trusted: failed requests, or a server that did not start."""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def wrk(who: str, port: int, scenario, seconds: float, connections: int, threads: int,
        workdir: pathlib.Path) -> dict:
    name, method, path, body, _ = scenario
    script = workdir / "wrk.lua"
    script.write_text(WRK_SCRIPT % {
        "method": lua_string(method),
        "body": "nil" if body is None else lua_string(json.dumps(body)),
    })
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script),
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    errors = {kind: result[kind] for kind in ("connect", "read", "write", "timeout", "status_errors")
              if result[kind]}
    if errors:
        raise Failure(f"{name} on {who}: failed requests {errors}")
    result["rps"] = result["requests"] / result["seconds"]
    return result


def request(port: int, method: str, path: str, body=None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_monolith(args, workdir: pathlib.Path) -> Server:
    """monolith on the bundled data, fresh (each repetition gets one: the POSTs add records that
    the book list would otherwise grow by), with the item the bids go to."""
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(ROOT / "data", data)
    # A long run's POSTs may pass the default cap of 250k records per resource.
    server = Server(args.monolith, workdir, {"DATA_DIR": str(data),
                                             "MAX_RECORDS_PER_RESOURCE": "100000000"},
                    default_logging=True)
    try:
        server.wait_ready(30)
        status = request(server.port, "PUT", f"{PREFIX}/items/{BENCH_ITEM}",
                         {"item": {"name": "Bench"}})
        if status not in (200, 201):
            raise Failure(f"creating the bench item answered {status}")
    except BaseException:
        server.stop(10)
        raise
    return server


def speed(args, workdir: pathlib.Path) -> list[str]:
    """Runs the interleaved series; returns the missed targets."""
    servers = {"reference": Server(args.reference, workdir, {}, default_logging=True)}
    try:
        servers["reference"].wait_ready(30)
        results = {(s[0], who): [] for s in SCENARIOS for who in ("reference", "monolith")}
        for rep in range(args.reps):
            servers["monolith"] = start_monolith(args, workdir)
            order = ["reference", "monolith"] if rep % 2 == 0 else ["monolith", "reference"]
            for scenario in SCENARIOS:
                for who in order:
                    results[(scenario[0], who)].append(
                        wrk(who, servers[who].port, scenario, args.seconds, args.connections,
                            args.threads, workdir))
            for who, server in servers.items():
                if server.process.poll() is not None:
                    raise Failure(f"{who} died during the run")
            servers.pop("monolith").stop(10)
    finally:
        for server in servers.values():
            server.stop(10)

    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.seconds}s, median of "
          f"{args.reps} interleaved repetitions; reference = bare axum handler, static JSON\n")
    print("| scenario | reference req/s | p50 | p99 | monolith req/s | p50 | p99 "
          "| req/s ratio (target) | p99 ratio (target) |")
    print("|---|---|---|---|---|---|---|---|---|")
    missed = []
    for name, _, _, _, target in SCENARIOS:
        row = {}
        for who in ("reference", "monolith"):
            runs = results[(name, who)]
            row[who] = {key: statistics.median(r[key] for r in runs)
                        for key in ("rps", "p50_us", "p99_us")}
        ratio = row["monolith"]["rps"] / row["reference"]["rps"]
        p99_ratio = row["monolith"]["p99_us"] / max(row["reference"]["p99_us"], 1)
        cells = []
        for who in ("reference", "monolith"):
            r = row[who]
            cells += [f"{r['rps']:,.0f}", f"{r['p50_us'] / 1000:.2f} ms",
                      f"{r['p99_us'] / 1000:.2f} ms"]
        ok = "" if ratio >= target else " MISSED"
        p99_ok = "" if p99_ratio <= MAX_P99_RATIO else " MISSED"
        print(f"| {name} | {' | '.join(cells)} | {ratio:.0%} (>= {target:.0%}){ok} "
              f"| {p99_ratio:.2f}x (<= {MAX_P99_RATIO}x){p99_ok} |")
        if ok:
            missed.append(f"{name}: {ratio:.0%} of the reference's req/s, target {target:.0%}")
        if p99_ok:
            missed.append(f"{name}: p99 {p99_ratio:.2f}x the reference's, "
                          f"target {MAX_P99_RATIO}x")
    return missed


def write_books(path: pathlib.Path, count: int) -> int:
    """A books.json of `count` books; returns the bytes of their titles and authors."""
    text_bytes = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write("[\n")
        for i in range(1, count + 1):
            title, author = f"Book number {i}", f"Author {i % 9973}"
            text_bytes += len(title.encode()) + len(author.encode())
            sep = ",\n" if i < count else "\n"
            out.write(f'{{"id":{i},"title":"{title}","author":"{author}"}}{sep}')
        out.write("]\n")
    return text_bytes


def memory(args, workdir: pathlib.Path) -> list[str]:
    """Idle RSS, bytes per book beyond its text at --books books, and seed load time; returns the
    missed targets."""
    small = Server(args.monolith, workdir, {"DATA_DIR": str(ROOT / "data")},
                   default_logging=True)
    try:
        small.wait_ready(30)
        idle_kib = small.rss_kib()
    finally:
        small.stop(10)

    big_data = workdir / "big"
    big_data.mkdir()
    for name in ("auction.json", "things.json"):
        shutil.copy(ROOT / "data" / name, big_data / name)
    text_bytes = write_books(big_data / "books.json", args.books)
    big = Server(args.monolith, workdir, {
        "DATA_DIR": str(big_data),
        "MAX_RECORDS_PER_RESOURCE": str(max(args.books, 250_000)),
    }, default_logging=True)
    try:
        ready_seconds = big.wait_ready(120, poll=0.01)
        big_kib = big.rss_kib()
    finally:
        big.stop(10)
    per_book = ((big_kib - idle_kib) * 1024 - text_bytes) / args.books

    print(f"\nmemory and start-up ({args.books:,} books of {text_bytes / args.books:.0f} "
          f"bytes of text each)\n")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| idle RSS, bundled data | {idle_kib / 1024:.1f} MiB | |")
    print(f"| RSS with {args.books:,} books | {big_kib / 1024:.1f} MiB | |")
    print(f"| bytes per book beyond its text | {per_book:.0f} B | <= {BYTES_PER_BOOK_TARGET} B |")
    print(f"| start to ready, {args.books:,}-book seed | {ready_seconds * 1000:.0f} ms "
          f"| < {SEED_LOAD_TARGET_SECONDS * 1000:.0f} ms |")
    missed = []
    if per_book > BYTES_PER_BOOK_TARGET:
        missed.append(f"{per_book:.0f} bytes per book, target {BYTES_PER_BOOK_TARGET}")
    if ready_seconds >= SEED_LOAD_TARGET_SECONDS:
        missed.append(f"{args.books:,}-book seed ready in {ready_seconds:.2f} s, "
                      f"target < {SEED_LOAD_TARGET_SECONDS} s")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monolith", type=pathlib.Path,
                        default=ROOT / "target/release/monolith")
    parser.add_argument("--reference", type=pathlib.Path,
                        default=ROOT / "target/release/examples/reference_server")
    parser.add_argument("--seconds", type=float, default=5, help="per wrk run (5)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (3)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--books", type=int, default=1_000_000,
                        help="books in the memory and start-up seed (1000000)")
    parser.add_argument("--enforce-targets", action="store_true",
                        help="exit 1 if a target is missed")
    args = parser.parse_args()
    for binary in (args.monolith, args.reference):
        if not binary.exists():
            print(f"{binary} is missing: cargo build --release --bin monolith "
                  "--example reference_server")
            return 1
    try:
        with tempfile.TemporaryDirectory(prefix="monolith-http-bench-") as tmp:
            workdir = pathlib.Path(tmp)
            missed = speed(args, workdir) + memory(args, workdir)
    except (Failure, ServerFailure, subprocess.SubprocessError) as e:
        print(f"\nFAILED: {e}")
        return 1
    if missed:
        print("\ntargets missed:\n  " + "\n  ".join(missed))
        return 1 if args.enforce_targets else 0
    print("\nevery target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
