#!/usr/bin/env python3
"""Speed of monolith on PostgreSQL against the database's own ceiling, in one run on one machine
and one PostgreSQL server.

1. The ceiling: `pgbench -i` (scale --scale) in a scratch database, then `pgbench -S -M prepared`
   (select-only, prepared statements) with --connections clients and --threads threads for
   --seconds, over TCP to 127.0.0.1, and for reference over the Unix socket.
2. monolith: the release binary with DATABASE_URL on a second scratch database, seeded from a
   generated data folder (--books books, --users users, --items items, no bids), then `wrk` with
   --connections connections: `GET /api/v1/books/{id}` on random ids, then `POST /api/v1/bids` by
   random users on the few items, with integer values so that ties happen.
3. Checks, exact: every 201 that wrk received is one stored bid (the bid count before and after,
   from `X-Total-Count`), the stored bids' ids are unique, and each item's winner read over HTTP
   is the highest of its bids read back, the earliest placed on a tie.

While wrk runs, monolith's database sessions are sampled (pg_stat_activity, twice a second) and
their average number per state and wait event printed: on CPU, waiting on a lock, idle waiting for
monolith, and so on, which tells where the time goes.

Prints a table: pgbench -S tps (TCP and socket), monolith's GET req/s and its ratio to pgbench
over TCP, bids/s, and the targets (GET >= 50 % of pgbench -S over TCP, bids >= 3000/s). Exit 1
if a check fails (or, with --enforce-targets, if a target is missed); both scratch databases
are dropped and the server is stopped however the run ends.

The database URL (a role that may create databases; its own database is only used to create
and drop the scratch ones) comes from --database-url, else BENCH_DATABASE_URL, else
TEST_DATABASE_URL. A password may be in it or in PGPASSWORD. Needs pgbench, psql and wrk
(Debian: postgresql-client, wrk). Python 3.11 standard library only.

    PGPASSWORD=... python3 benches/postgres.py [target/release/monolith] \\
        --database-url postgres://monolith@127.0.0.1:5432/postgres [--seconds 15]
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from monolith_server import Server, ServerFailure

ROOT = pathlib.Path(__file__).resolve().parent.parent
PREFIX = "/api/v1"
GET_TARGET = 0.5
BIDS_TARGET = 3000.0

# Random book ids in 1..N (N from the command line), one request per response.
GET_LUA = """
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
end
local n
function init(args)
  n = tonumber(args[1])
  math.randomseed(tonumber(args[2]) * 1000 + id)
end
function request()
  return wrk.format("GET", "%s/books/" .. math.random(1, n))
end
""" % PREFIX

# Bids by random users on random items for `seconds`, then only `/healthz` until wrk stops, so
# that no bid is in flight when wrk cuts its connections: every bid placed gets its answer
# counted. Values are whole numbers 1..500, so each item's highest value is bid many times and
# the earliest-on-a-tie rule is exercised. Statuses are counted per thread and summed in done().
BIDS_LUA = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

local threads = {}
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

local users, items, deadline
statuses = {}
first_sent = nil
last_bid_answer = 0
function init(args)
  users = tonumber(args[1])
  items = tonumber(args[2])
  deadline = now() + tonumber(args[3])
  math.randomseed(tonumber(args[4]) * 1000 + id)
end

local bidding = true
function request()
  if bidding and now() >= deadline then bidding = false end
  if not bidding then
    return wrk.format("GET", "/healthz")
  end
  if first_sent == nil then first_sent = now() end
  local body = string.format('{"bid":{"item":"item%%d","user":"user%%d","value":%%d}}',
    math.random(1, items), math.random(1, users), math.random(1, 500))
  return wrk.format("POST", "%s/bids", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  -- /healthz answers 200; a bid answers 201 or an error, never 200.
  if status ~= 200 then
    statuses[status] = (statuses[status] or 0) + 1
    last_bid_answer = now()
  end
end

function done(summary, latency, requests)
  local totals = {}
  local started, ended = math.huge, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
    local s = thread:get("first_sent")
    if s ~= nil and s < started then started = s end
    local e = thread:get("last_bid_answer")
    if e > ended then ended = e end
  end
  for status, count in pairs(totals) do
    io.write(string.format("BENCH status %%d %%d\\n", status, count))
  end
  io.write(string.format("BENCH span %%.6f\\n", ended - started))
end
""" % PREFIX


class Failure(Exception):
    """A step of the benchmark that could not be done, or a check that failed."""


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class Postgres:
    """The server behind the URL: libpq environment variables for psql and pgbench, so that the
    password never appears on a command line."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise Failure("the database URL must start with postgres:// or postgresql://")
        self.url = parts
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env.update({
            "PGHOST": parts.hostname or "127.0.0.1",
            "PGPORT": str(parts.port or 5432),
            "PGDATABASE": urllib.parse.unquote(parts.path.lstrip("/")) or "postgres",
            "PGCONNECT_TIMEOUT": "5",
        })
        if parts.username:
            self.env["PGUSER"] = urllib.parse.unquote(parts.username)
        password = parts.password if parts.password is not None else os.environ.get("PGPASSWORD")
        if password is not None:
            self.env["PGPASSWORD"] = urllib.parse.unquote(password)

    def psql(self, sql: str, database: str | None = None) -> str:
        env = dict(self.env)
        if database:
            env["PGDATABASE"] = database
        run = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             env=env, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise Failure(f"psql: {run.stderr.strip()}")
        return run.stdout.strip()

    def url_for(self, database: str) -> str:
        """The URL with another database name (for monolith's DATABASE_URL)."""
        netloc = self.url.netloc
        if self.url.password is None and "PGPASSWORD" in self.env:
            user = urllib.parse.quote(self.env.get("PGUSER", ""), safe="")
            password = urllib.parse.quote(self.env["PGPASSWORD"], safe="")
            host = self.url.netloc.rsplit("@", 1)[-1]
            netloc = f"{user}:{password}@{host}"
        return urllib.parse.urlunsplit((self.url.scheme, netloc, "/" + database, self.url.query, ""))


class WaitSampler(threading.Thread):
    """Samples, twice a second, what monolith's database sessions are doing (pg_stat_activity):
    running on CPU, waiting for a lock, for the client (monolith), for I/O. Tells where the time
    goes when a target is missed."""

    def __init__(self, pg: Postgres, database: str):
        super().__init__(daemon=True)
        self.pg, self.database = pg, database
        self.stop = threading.Event()
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0

    def run(self):
        sql = ("SELECT state || coalesce(':' || wait_event_type || '/' || wait_event, '') "
               f"FROM pg_stat_activity WHERE datname = '{self.database}' "
               "AND pid <> pg_backend_pid()")
        while not self.stop.wait(0.5):
            try:
                rows = self.pg.psql(sql).splitlines()
            except (Failure, subprocess.TimeoutExpired):
                continue
            self.samples += 1
            self.counts.update(row for row in rows if row)

    def summary(self) -> str:
        self.stop.set()
        self.join()
        if not self.samples:
            return "no samples"
        return ", ".join(f"{state} {n / self.samples:.1f}"
                         for state, n in self.counts.most_common(6))


def pgbench_tps(pg: Postgres, database: str, host: str, args, os_user: str | None = None) -> float:
    """pgbench -S's rate; `os_user` runs it as that system user (for peer authentication)."""
    env = dict(pg.env, PGHOST=host, PGDATABASE=database)
    command = ["pgbench", "-n", "-S", "-M", "prepared", "-c", str(args.connections),
               "-j", str(args.threads), "-T", str(args.seconds)]
    if os_user:
        env["PGUSER"] = os_user
        env.pop("PGPASSWORD", None)
        command = ["runuser", "-u", os_user, "--", *command]
    run = subprocess.run(command, env=env, capture_output=True, text=True,
                         timeout=args.seconds + 120)
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    if run.returncode != 0 or not found:
        raise Failure(f"pgbench -S over {host}: {run.stderr.strip()[-500:]}")
    return float(found.group(1))


def write_seed(folder: pathlib.Path, args) -> None:
    folder.mkdir()
    books = [{"id": i, "title": f"Benchmark book {i}", "author": f"Author {i % 97}"}
             for i in range(1, args.books + 1)]
    (folder / "books.json").write_text(json.dumps(books))
    auction = {
        "users": {f"user{i}": {"name": f"User {i}"} for i in range(1, args.users + 1)},
        "items": {f"item{i}": {"name": f"Item {i}"} for i in range(1, args.items + 1)},
        "bids": {},
    }
    (folder / "auction.json").write_text(json.dumps(auction))
    shutil.copy(ROOT / "data" / "things.json", folder / "things.json")


def get(port: int, path: str) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read(), {k.lower(): v for k, v in res.getheaders()}
    finally:
        conn.close()


def total(port: int, resource: str) -> int:
    status, body, headers = get(port, f"{PREFIX}/{resource}?limit=1")
    if status != 200 or "x-total-count" not in headers:
        raise Failure(f"GET {PREFIX}/{resource}?limit=1: {status} {body[:200]!r}")
    return int(headers["x-total-count"])


def run_wrk(url: str, script: str, lua_args: list[str], seconds: float, args,
            workdir: pathlib.Path) -> str:
    path = workdir / "script.lua"
    path.write_text(script)
    run = subprocess.run(
        ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:.0f}s",
         "--timeout", "10s", "-s", str(path), url, "--", *lua_args],
        capture_output=True, text=True, timeout=seconds + 60)
    if run.returncode != 0:
        raise Failure(f"wrk: {run.stderr.strip()[-500:]}")
    return run.stdout


def wrk_rate(output: str) -> float:
    found = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if not found:
        raise Failure(f"no Requests/sec in wrk's output:\n{output}")
    return float(found.group(1))


def wrk_problems(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines()
            if "Non-2xx" in line or "Socket errors" in line]


def check_winners(port: int, items: int) -> tuple[int, list[str], set[str]]:
    """Reads every item's bids and winner back; returns the bid count, the mismatches and the
    ids seen."""
    problems, ids, count = [], set(), 0
    for i in range(1, items + 1):
        item = f"item{i}"
        status, body, _ = get(port, f"{PREFIX}/items/{item}/bids")
        if status != 200:
            raise Failure(f"GET {PREFIX}/items/{item}/bids: {status}")
        bids = json.loads(body)  # in placing order
        count += len(bids)
        for bid in bids:
            if bid["bid_id"] in ids:
                problems.append(f"bid id {bid['bid_id']} listed twice")
            ids.add(bid["bid_id"])
        status, body, _ = get(port, f"{PREFIX}/items/{item}/winning")
        if not bids:
            if status != 404:
                problems.append(f"{item} has no bids but a winner ({status})")
            continue
        if status != 200:
            problems.append(f"{item}: GET winning answered {status}")
            continue
        best = bids[0]
        for bid in bids[1:]:
            if bid["bid"]["value"] > best["bid"]["value"]:  # strictly: the earliest tie stays
                best = bid
        winner = json.loads(body)
        if winner["bid_id"] != best["bid_id"]:
            problems.append(f"{item}: winner {winner['bid_id']} ({winner['bid']['value']}), "
                            f"expected {best['bid_id']} ({best['bid']['value']})")
    return count, problems, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", default=str(ROOT / "target/release/monolith"),
                        help="the server binary (default: target/release/monolith)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL")
                        or os.environ.get("TEST_DATABASE_URL"),
                        help="a role that may create databases (default: BENCH_DATABASE_URL, "
                             "else TEST_DATABASE_URL)")
    parser.add_argument("--seconds", type=int, default=15, help="each measurement (15)")
    parser.add_argument("--connections", type=int, default=64, help="clients / connections (64)")
    parser.add_argument("--threads", type=int, default=2, help="pgbench -j and wrk -t (2)")
    parser.add_argument("--scale", type=int, default=1, help="pgbench -i scale (1)")
    parser.add_argument("--books", type=int, default=10_000, help="seeded books (10000)")
    parser.add_argument("--users", type=int, default=1_000, help="seeded users (1000)")
    parser.add_argument("--items", type=int, default=10, help="seeded items, bid on (10)")
    parser.add_argument("--pool", type=int,
                        help="DATABASE_MAX_CONNECTIONS for monolith (default: its own default)")
    parser.add_argument("--enforce-targets", action="store_true",
                        help="exit 1 when a speed target is missed, not only on a failed check")
    args = parser.parse_args()

    if not args.database_url:
        print("postgres bench: give --database-url (or BENCH_DATABASE_URL / TEST_DATABASE_URL)")
        return 1
    for tool in ("pgbench", "psql", "wrk"):
        if shutil.which(tool) is None:
            print(f"postgres bench: {tool} is not installed (Debian: postgresql-client, wrk)")
            return 1
    binary = pathlib.Path(args.binary).resolve()
    if not os.access(binary, os.X_OK):
        print(f"postgres bench: {binary} is not an executable; build it with cargo build --release")
        return 1

    def stopped(signum, _frame):
        print(f"postgres bench: FAILED: stopped by signal {signum}")
        sys.exit(1)

    signal.signal(signal.SIGTERM, stopped)
    pg = Postgres(args.database_url)
    scratch = f"monolith_bench_{os.getpid()}"
    databases = [f"{scratch}_pgbench", f"{scratch}_server"]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="monolith-pgbench-"))
    server = None
    created: list[str] = []
    try:
        load = os.getloadavg()
        print(f"postgres bench: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
              f"{os.cpu_count()} CPUs; PostgreSQL {pg.psql('SHOW server_version')}, "
              f"max_connections {pg.psql('SHOW max_connections')}")
        for database in databases:
            pg.psql(f'CREATE DATABASE "{database}"')
            created.append(database)

        # 1. The ceiling.
        init = subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale)],
                              env=dict(pg.env, PGDATABASE=databases[0]),
                              capture_output=True, text=True, timeout=600)
        if init.returncode != 0:
            raise Failure(f"pgbench -i: {init.stderr.strip()[-500:]}")
        tcp = pgbench_tps(pg, databases[0], "127.0.0.1", args)
        print(f"postgres bench: pgbench -S -M prepared -c {args.connections} -j {args.threads}, "
              f"TCP 127.0.0.1: {tcp:.0f} tps")
        socket_dir = pg.psql("SHOW unix_socket_directories").split(",")[0].strip()
        unix = None
        try:
            unix = pgbench_tps(pg, databases[0], socket_dir, args)
        except Failure as e:
            # Debian's default for the socket is peer authentication: as root, ask as the
            # database's own system user.
            if os.geteuid() == 0 and shutil.which("runuser"):
                try:
                    unix = pgbench_tps(pg, databases[0], socket_dir, args, os_user="postgres")
                except Failure as e2:
                    print(f"postgres bench: no Unix-socket figure: {e2}")
            else:
                print(f"postgres bench: no Unix-socket figure: {e}")
        if unix:
            print(f"postgres bench: the same over the Unix socket {socket_dir}: {unix:.0f} tps")

        # 2. monolith on the second scratch database, seeded from a generated folder.
        seed = workdir / "data"
        write_seed(seed, args)
        started = time.monotonic()
        env = {"DATA_DIR": str(seed), "DATABASE_URL": pg.url_for(databases[1])}
        if args.pool:
            env["DATABASE_MAX_CONNECTIONS"] = str(args.pool)
        server = Server(binary, workdir, env)
        server.wait_ready(120)
        port = server.port
        print(f"postgres bench: monolith ready in {time.monotonic() - started:.1f} s "
              f"(migrated and seeded: {total(port, 'books')} books, {total(port, 'users')} users, "
              f"{total(port, 'items')} items)")
        if total(port, "books") != args.books:
            raise Failure("the seeded book count is wrong")

        base = f"http://127.0.0.1:{port}"
        run_wrk(base, GET_LUA, [str(args.books), "1"], 3, args, workdir)  # warm-up
        sampler = WaitSampler(pg, databases[1])
        sampler.start()
        cpu0, machine0 = server.cpu_seconds(), machine_busy()
        out = run_wrk(base, GET_LUA, [str(args.books), "2"], args.seconds, args, workdir)
        cpu1, machine1 = server.cpu_seconds(), machine_busy()
        get_sessions = sampler.summary()
        get_rate = wrk_rate(out)
        get_cpu = (cpu1 - cpu0) / args.seconds
        get_machine = (machine1[0] - machine0[0]) / (machine1[1] - machine0[1])
        print(f"postgres bench: GET {PREFIX}/books/{{id}}: {get_rate:.0f} req/s; monolith CPU "
              f"{get_cpu:.0%} of one core, machine {get_machine:.0%} busy")
        print(f"postgres bench:   monolith's database sessions on average: {get_sessions}")
        problems = [f"GET one: {p}" for p in wrk_problems(out)]

        bids_before = total(port, "bids")
        sampler = WaitSampler(pg, databases[1])
        sampler.start()
        cpu0, machine0 = server.cpu_seconds(), machine_busy()
        out = run_wrk(base, BIDS_LUA, [str(args.users), str(args.items), str(args.seconds), "3"],
                      args.seconds + 2, args, workdir)
        cpu1, machine1 = server.cpu_seconds(), machine_busy()
        bids_sessions = sampler.summary()
        statuses = {int(s): int(n) for s, n in re.findall(r"BENCH status (\d+) (\d+)", out)}
        span = float(re.search(r"BENCH span ([0-9.]+)", out).group(1))
        created_bids = statuses.get(201, 0)
        bids_rate = created_bids / span if span > 0 else 0.0
        bids_cpu = (cpu1 - cpu0) / (args.seconds + 2)
        bids_machine = (machine1[0] - machine0[0]) / (machine1[1] - machine0[1])
        print(f"postgres bench: POST {PREFIX}/bids: {created_bids} placed in {span:.2f} s = "
              f"{bids_rate:.0f} bids/s; answers {dict(sorted(statuses.items()))}; monolith CPU "
              f"{bids_cpu:.0%} of one core (whole run), machine {bids_machine:.0%} busy")
        print(f"postgres bench:   monolith's database sessions on average: {bids_sessions}")
        problems += [f"bids: {p}" for p in wrk_problems(out) if "Socket errors" in p]
        if set(statuses) - {201}:
            problems.append(f"bids: answers other than 201: {statuses}")

        # 3. Checks.
        bids_after = total(port, "bids")
        listed, winner_problems, _ = check_winners(port, args.items)
        print(f"postgres bench: bids stored {bids_after - bids_before} (X-Total-Count "
              f"{bids_before} -> {bids_after}), listed per item {listed}, 201s counted "
              f"{created_bids}; winners checked on {args.items} items")
        if bids_after - bids_before != created_bids:
            problems.append(f"{bids_after - bids_before} bids stored, {created_bids} 201s counted")
        if listed != bids_after:
            problems.append(f"{listed} bids listed per item, {bids_after} in X-Total-Count")
        problems += winner_problems

        errors_logged = server.errors_logged()
        if errors_logged:
            problems.append(f"the server logged {len(errors_logged)} error(s): {errors_logged[0]}")

        ratio = get_rate / tcp
        get_ok, bids_ok = ratio >= GET_TARGET, bids_rate >= BIDS_TARGET
        print()
        print(f"| measure ({args.connections} connections, {args.seconds:.0f} s each) | value "
              f"| target |")
        print("|---|---|---|")
        print(f"| pgbench -S -M prepared, TCP 127.0.0.1 | {tcp:.0f} tps | the ceiling |")
        print(f"| pgbench -S -M prepared, Unix socket | "
              f"{f'{unix:.0f} tps' if unix else 'n/a'} | reference |")
        print(f"| monolith GET /books/{{id}} | {get_rate:.0f} req/s ({ratio:.0%} of pgbench TCP) "
              f"| ≥ {GET_TARGET:.0%}: {'met' if get_ok else 'MISSED'} |")
        print(f"| monolith POST /bids | {bids_rate:.0f} bids/s | ≥ {BIDS_TARGET:.0f}: "
              f"{'met' if bids_ok else 'MISSED'} |")
        print(f"| winners and bid count after the run | "
              f"{'exact' if not problems else 'WRONG'} | exact |")
        print()
        for problem in problems:
            print(f"postgres bench: FAILED: {problem}")
        if problems:
            return 1
        if args.enforce_targets and not (get_ok and bids_ok):
            print("postgres bench: FAILED: a speed target was missed")
            return 1
        return 0
    except (Failure, ServerFailure, OSError, subprocess.TimeoutExpired) as e:
        print(f"postgres bench: FAILED: {e}")
        if server is not None:
            server.print_log_tail()
        return 1
    finally:
        if server is not None:
            server.stop(timeout=15)
        for database in created:
            try:
                pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            except (Failure, subprocess.TimeoutExpired) as e:
                print(f"postgres bench: could not drop {database}: {e}")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
