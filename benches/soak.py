#!/usr/bin/env python3
"""Soak test: drives the release server with a steady mixed load and fails on any error or on
memory growth.

It starts the binary on a free loopback port with a copy of data/, measures the peak throughput
of the mix for a few seconds (unless --rate is given), then runs the same mix at --load (50 %) of
that peak for --duration seconds: list and record reads of books, items, users and bids, created
books and bids, and deletes of this run's own earlier records, so the record count stays level.

Exit 1, with the reason, if any request gets an unexpected status or a connection error, if the
server dies or logs an error, if its resident memory (VmRSS) grows more than --max-growth (5 %)
from the end of the warm-up (the first 20 % of the run) to the end, or if the record counts at
the end (the `monolith_records` gauge) differ from the start. The server is stopped at the end,
whatever happens. Python 3.11 standard library only.

    python3 benches/soak.py [target/release/monolith] [--duration 60] [--rate R]
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import multiprocessing
import os
import pathlib
import queue
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

from monolith_server import Server, ServerFailure

ROOT = pathlib.Path(__file__).resolve().parent.parent
PREFIX = "/api/v1"
# Seed records that the load reads and bids on; it never deletes them.
SEED_USERS = ["user1", "user2", "user3"]
SEED_ITEMS = ["item1", "item2"]
# Each worker deletes its oldest record of a kind once it holds more than this many.
WINDOW = 20


class Failure(Exception):
    """A request that did not get the answer the mix expects."""


class Client:
    """One keep-alive connection; counts its requests and, if `record`, keeps their latencies."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.sent = 0
        self.record = False
        self.latencies: list[float] = []

    def request(self, method: str, path: str, body=None, expect=(200,)) -> tuple[int, bytes, dict]:
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            res = self.conn.getresponse()
            payload = res.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            raise Failure(f"{method} {path}: connection error: {e!r}") from e
        self.sent += 1
        if self.record:
            self.latencies.append(time.perf_counter() - started)
        if res.status not in expect:
            raise Failure(f"{method} {path}: status {res.status}, expected {expect}: {payload[:300]!r}")
        return res.status, payload, dict(res.getheaders())

    def close(self):
        self.conn.close()


class Worker(threading.Thread):
    """Sends the mix on its own connection, at `rate` requests per second (None: flat out)."""

    def __init__(self, port: int, seed: int, stop: threading.Event, errors: list):
        super().__init__(daemon=True)
        self.client = Client(port)
        self.random = random.Random(seed)
        self.stop = stop
        self.errors = errors
        self.rate: float | None = None
        self.books: collections.deque[int] = collections.deque()
        self.bids: collections.deque[str] = collections.deque()

    def one(self):
        """One request of the mix: 60 % reads, 20 % creates, the rest deletes or reads."""
        r = self.random.random()
        c = self.client
        if r < 0.08:
            c.request("GET", f"{PREFIX}/books?limit=50")
        elif r < 0.14:
            c.request("GET", f"{PREFIX}/items")
        elif r < 0.20:
            c.request("GET", f"{PREFIX}/users")
        elif r < 0.26:
            c.request("GET", f"{PREFIX}/bids")
        elif r < 0.34:
            c.request("GET", f"{PREFIX}/users/{self.random.choice(SEED_USERS)}")
        elif r < 0.42:
            item = self.random.choice(SEED_ITEMS)
            flag = self.random.choice(["", "?winningOnly=1", "?complete=1"])
            c.request("GET", f"{PREFIX}/items/{item}{flag}")
        elif r < 0.48:
            c.request("GET", f"{PREFIX}/items/item1/winning")
        elif r < 0.54:
            book = self.books[-1] if self.books else 1
            c.request("GET", f"{PREFIX}/books/{book}")
        elif r < 0.60:
            if self.bids:
                c.request("GET", f"{PREFIX}/bids/{self.bids[-1]}")
            else:
                c.request("GET", f"{PREFIX}/users/user1/items")
        elif r < 0.70:
            _, body, _ = c.request(
                "POST", f"{PREFIX}/books", {"title": "Soak", "author": "Load"}, expect=(201,)
            )
            self.books.append(json.loads(body)["id"])
        elif r < 0.80:
            bid = {
                "item": self.random.choice(SEED_ITEMS),
                "user": self.random.choice(SEED_USERS),
                "value": round(self.random.uniform(1, 100), 2),
            }
            _, body, _ = c.request("POST", f"{PREFIX}/bids", {"bid": bid}, expect=(201,))
            self.bids.append(json.loads(body)["bid_id"])
        elif r < 0.90:
            if len(self.books) > WINDOW // 2:
                c.request("DELETE", f"{PREFIX}/books/{self.books.popleft()}", expect=(204,))
            else:
                c.request("GET", f"{PREFIX}/books/1")
        else:
            if len(self.bids) > WINDOW // 2:
                c.request("DELETE", f"{PREFIX}/bids/{self.bids.popleft()}", expect=(204,))
            else:
                c.request("GET", f"{PREFIX}/bids/bid1")
        # Creates and deletes are equally likely; this bounds what a worker holds if chance
        # runs one way for a while.
        while len(self.books) > WINDOW:
            c.request("DELETE", f"{PREFIX}/books/{self.books.popleft()}", expect=(204,))
        while len(self.bids) > WINDOW:
            c.request("DELETE", f"{PREFIX}/bids/{self.bids.popleft()}", expect=(204,))

    def run(self):
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.rate:
                    next_at += 1.0 / self.rate
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    elif delay < -1.0:
                        next_at = time.monotonic()  # a stall: do not burst to catch up
                self.one()
        except Failure as e:
            self.errors.append(str(e))
            self.stop.set()
        except Exception as e:  # a bug in the script must fail the run too
            self.errors.append(f"worker crashed: {e!r}")
            self.stop.set()

    def cleanup(self):
        """Deletes what this worker still holds, so the end count matches the start."""
        for book in self.books:
            self.client.request("DELETE", f"{PREFIX}/books/{book}", expect=(204,))
        for bid in self.bids:
            self.client.request("DELETE", f"{PREFIX}/bids/{bid}", expect=(204,))
        self.books.clear()
        self.bids.clear()
        self.client.close()


def records(port: int) -> dict[str, int]:
    """Records per resource from the `monolith_records` gauge of /metrics ({} if it is absent)."""
    c = Client(port)
    try:
        _, body, _ = c.request("GET", "/metrics")
    finally:
        c.close()
    counts = {}
    for line in body.decode().splitlines():
        if line.startswith("monolith_records{"):
            labels, value = line.rsplit(" ", 1)
            resource = labels.split('resource="', 1)[-1].split('"', 1)[0]
            counts[resource] = int(float(value))
    return counts


def drive(port: int, workers: int, rate: float | None, seed: int, stop, results) -> None:
    """One driver process: the mix on `workers` connections (threads) until `stop` is set; then
    deletes what it created and puts (requests, latencies, errors) on `results`."""
    errors: list[str] = []
    pool = [Worker(port, seed + i, stop, errors) for i in range(workers)]
    for w in pool:
        w.rate = rate / workers if rate else None
        w.client.record = rate is not None
        w.start()
    for w in pool:
        w.join()
    sent = sum(w.client.sent for w in pool)
    latencies = [x for w in pool for x in w.client.latencies]
    if not errors:
        for w in pool:
            try:
                w.cleanup()
            except Failure as e:
                errors.append(str(e))
    results.put((sent, latencies, errors))


def run_phase(port: int, processes: int, workers: int, seconds: float, rate: float | None,
              seed: int, on_tick=None) -> tuple[int, list[float], float, list[str]]:
    """Runs the mix from `processes` × `workers` connections for `seconds` (less on the first
    error); returns the request count, the latencies, the elapsed time and the errors.
    `on_tick(elapsed)` is called about once a second. Several processes, since one Python
    process tops out (the GIL) well before the server does."""
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    results = ctx.Queue()
    share = rate / processes if rate else None
    drivers = [
        ctx.Process(target=drive, args=(port, workers, share, seed + 100 * i, stop, results),
                    daemon=True)
        for i in range(processes)
    ]
    started = time.monotonic()
    for d in drivers:
        d.start()
    deadline = started + seconds
    count, latencies, errors = 0, [], []
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            if on_tick:
                on_tick(time.monotonic() - started)
    finally:
        stop.set()
        elapsed = time.monotonic() - started
        # Read the results before joining: a process does not exit while its queue is full.
        for _ in drivers:
            try:
                n, lat, errs = results.get(timeout=30)
            except queue.Empty:
                errors.append("a driver process did not report")
                break
            count += n
            latencies += lat
            errors += errs
        for d in drivers:
            d.join(timeout=5)
            if d.is_alive():
                d.kill()
    return count, latencies, elapsed, errors


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", default=str(ROOT / "target/release/monolith"),
                        help="the server binary (default: target/release/monolith)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of steady load (60)")
    parser.add_argument("--rate", type=float, help="requests per second; default: --load × peak")
    parser.add_argument("--load", type=float, default=0.5, help="fraction of the peak (0.5)")
    parser.add_argument("--calibrate", type=float, default=5, help="seconds to measure the peak (5)")
    parser.add_argument("--processes", type=int, default=2, help="driver processes (2)")
    parser.add_argument("--workers", type=int, default=4,
                        help="connections per driver process (4)")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up fraction of the run (0.2)")
    parser.add_argument("--max-growth", type=float, default=0.05,
                        help="largest allowed VmRSS growth after the warm-up (0.05)")
    parser.add_argument("--data", default=str(ROOT / "data"), help="seed folder to copy (data/)")
    args = parser.parse_args()

    binary = pathlib.Path(args.binary).resolve()
    if not os.access(binary, os.X_OK):
        print(f"soak: {binary} is not an executable; build it with cargo build --release")
        return 1

    # SIGTERM (a CI timeout) must still reach the `finally` that stops the server.
    def stopped(signum, _frame):
        print(f"soak: FAILED: stopped by signal {signum}")
        sys.exit(1)

    signal.signal(signal.SIGTERM, stopped)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="monolith-soak-"))
    server = None
    try:
        data = workdir / "data"
        shutil.copytree(args.data, data)
        server = Server(binary, workdir, {"DATA_DIR": str(data)})
        server.wait_ready(15)
        port = server.port

        start_records = records(port)
        if args.rate:
            rate = args.rate
            print(f"soak: rate {rate:.0f} req/s (given)")
        else:
            cpu_before = server.cpu_seconds()
            count, _, elapsed, errors = run_phase(port, args.processes, args.workers,
                                                  args.calibrate, None, 1)
            if errors:
                raise Failure(errors[0])
            cpu = (server.cpu_seconds() - cpu_before) / elapsed
            peak = count / elapsed
            rate = peak * args.load
            print(f"soak: peak {peak:.0f} req/s over {elapsed:.1f} s from {args.processes} × "
                  f"{args.workers} connections (server CPU {cpu:.0%} of one core); "
                  f"running at {rate:.0f} req/s ({args.load:.0%})")

        rss = {"start": server.rss_kib(), "warm": None, "max": 0}
        warm_at = args.duration * args.warmup

        def tick(elapsed: float):
            if server.process.poll() is not None:
                raise Failure(f"the server exited with {server.process.returncode}")
            now = server.rss_kib()
            rss["max"] = max(rss["max"], now)
            if rss["warm"] is None and elapsed >= warm_at:
                rss["warm"] = now

        cpu_before = server.cpu_seconds()
        total, latencies, elapsed, errors = run_phase(port, args.processes, args.workers,
                                                      args.duration, rate, 1000, tick)
        cpu = (server.cpu_seconds() - cpu_before) / elapsed
        if errors:
            raise Failure(f"{errors[0]} ({len(errors)} error(s))")
        rss_end = server.rss_kib()
        rss["warm"] = rss["warm"] or rss["start"]
        end_records = records(port)

        latencies.sort()
        growth = rss_end / rss["warm"] - 1
        print(f"soak: {total} requests in {elapsed:.1f} s = {total / elapsed:.0f} req/s; "
              f"latency p50 {percentile(latencies, 0.5) * 1000:.2f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms, "
              f"max {latencies[-1] * 1000 if latencies else float('nan'):.2f} ms; "
              f"server CPU {cpu:.0%} of one core")
        print(f"soak: VmRSS {rss['start']} KiB at start, {rss['warm']} KiB after warm-up "
              f"({warm_at:.0f} s), {rss_end} KiB at the end ({growth:+.1%}), max {rss['max']} KiB")
        print(f"soak: records at start {start_records or 'n/a'}, at the end {end_records or 'n/a'}")

        failed = []
        if growth > args.max_growth:
            failed.append(f"VmRSS grew {growth:.1%} after the warm-up (limit {args.max_growth:.0%})")
        if start_records != end_records:
            failed.append("the record counts at the end differ from the start")
        errors_logged = server.errors_logged()
        if errors_logged:
            failed.append(f"the server logged {len(errors_logged)} error(s): {errors_logged[0]}")
        for reason in failed:
            print(f"soak: FAILED: {reason}")
        return 1 if failed else 0
    except (Failure, ServerFailure, OSError) as e:
        print(f"soak: FAILED: {e}")
        if server is not None:
            server.print_log_tail()
        return 1
    finally:
        if server is not None:
            server.stop(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
