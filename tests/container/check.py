"""What tests/container/run.sh checks, one subcommand per stage: over HTTP as a user would, and
from the host (podman inspect, /proc of the container's process) what the container may do."""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

MIB = 1024 * 1024
sys.stdout.reconfigure(line_buffering=True)


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def ok(message):
    print(f"ok: {message}")


def podman(*args, check=True):
    done = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        fail(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done


def inspect(kind, name):
    return json.loads(podman(kind, "inspect", name).stdout)[0]


def request(method, url, body=None, headers=None, timeout=10):
    """(status, headers, parsed body or text); never raises on an HTTP status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            status, head, raw = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, error.headers, error.read()
    try:
        return status, head, json.loads(raw) if raw else None
    except ValueError:
        return status, head, raw.decode(errors="replace")


def wait_for(url, seconds, expect=200):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            status, _, _ = request("GET", url, timeout=3)
            if status == expect:
                return
            last = f"status {status}"
        except OSError as error:
            last = str(error)
        time.sleep(1)
    fail(f"{url} did not answer {expect} within {seconds} s (last: {last})")


def containers(project, service):
    names = podman(
        "ps", "--filter", f"label=io.podman.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
    ).stdout.split()
    if not names:
        fail(f"no running container of service {service}")
    return sorted(names)


def ip_of(container):
    networks = inspect("container", container)["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


def mount_options(pid, point):
    with open(f"/proc/{pid}/mountinfo") as mounts:
        for line in mounts:
            parts = line.split()
            if parts[4] == point:
                return set(parts[5].split(",")) | set(parts[parts.index("-") + 3].split(","))
    fail(f"{point} is not a mount point in the container")


def wait_healthy(container, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = inspect("container", container)["State"].get("Health") or {}
        if health.get("Status") == "healthy":
            return
        time.sleep(1)
    fail(f"{container} did not become healthy in {seconds} s")


# ---- the image ----

def check_image(args):
    image = inspect("image", args.image)
    config = image["Config"]
    if config.get("User") != "65532:65532":
        fail(f"the image runs as {config.get('User')!r}, not 65532:65532")
    if config.get("Entrypoint") != ["/usr/local/bin/monolith"] or config.get("Cmd"):
        fail(f"entrypoint {config.get('Entrypoint')} cmd {config.get('Cmd')}: not exec form alone")
    test = (image.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test")
    if test != ["CMD", "/usr/local/bin/monolith", "healthcheck"]:
        fail(f"healthcheck {test}: not the exec form of `monolith healthcheck`")
    ok("runs as 65532:65532; entrypoint and healthcheck are exec form (no shell)")

    # The layers the Dockerfile adds to the base hold the binary and nothing else.
    base_layers = len(inspect("image", args.base)["RootFS"]["Layers"])
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        archive = os.path.join(scratch, "image.tar")
        podman("save", "--quiet", "--format", "docker-archive", "-o", archive, args.image)
        with tarfile.open(archive) as saved:
            manifest = json.load(saved.extractfile("manifest.json"))[0]
            added_files = []
            for layer in manifest["Layers"][base_layers:]:
                with tarfile.open(fileobj=saved.extractfile(layer)) as files:
                    added_files += [m for m in files.getmembers() if not m.isdir()]
    names = sorted(m.name.lstrip("./") for m in added_files)
    if names != ["usr/local/bin/monolith"]:
        fail(f"the image adds {names} to its base, not the binary alone")
    binary = added_files[0].size
    base = inspect("image", args.base)["Size"]
    total = image["Size"]
    print(
        f"image size: {total / MIB:.1f} MiB = stand-in base {base / MIB:.1f} MiB "
        f"+ binary {binary / MIB:.1f} MiB"
    )
    if total > 40 * 1000 * 1000:
        fail(f"the image is {total / 1e6:.1f} MB, over the 40 MB target")
    ok(f"the image adds only the binary; {total / 1e6:.1f} MB in all (target: under 40 MB)")

    # The base holds no shell, so the healthcheck and entrypoint passing later prove none needed.
    no_shell = podman("run", "--rm", "--entrypoint", "/bin/sh", args.image, "-c", "true", check=False)
    if no_shell.returncode == 0:
        fail("the runtime stand-in has a shell: it could hide a dependence on one")
    ok("no shell in the image")


# ---- the default profile ----

def check_default(args):
    base = f"http://127.0.0.1:{args.port}"
    wait_for(f"{base}/readyz", 60)
    for resource, path in (("books", "/api/v1/books"), ("things", "/api/v1/things")):
        with open(os.path.join(args.data, f"{resource}.json")) as seed:
            expected = len(json.load(seed))
        status, head, _ = request("GET", base + path)
        if status != 200 or int(head["X-Total-Count"]) != expected:
            fail(f"{path}: {status}, {head.get('X-Total-Count')} records, seed has {expected}")
    status, _, body = request("GET", f"{base}/api/v1/books/1")
    if status != 200 or "title" not in body:
        fail(f"GET /api/v1/books/1: {status} {body}")
    ok(f"the API answers on :{args.port} with the mounted data/")

    # .env: SECRET_KEY arrives; its PORT=9999 loses to the compose file's PORT (still served).
    status, _, body = request("GET", f"{base}/api/v1/echo?message=hi", headers={"X-Server-Key": args.key})
    if status != 200 or body != {"echo": "hi"}:
        fail(f"echo with the .env key: {status} {body}")
    status, _, _ = request("GET", f"{base}/api/v1/echo?message=hi", headers={"X-Server-Key": "wrong"})
    if status != 403:
        fail(f"echo with a wrong key: {status}, not 403")
    ok(".env next to the compose file is read (SECRET_KEY), the compose file's PORT wins over it")

    [container] = containers(args.project, "monolith")
    info = inspect("container", container)
    pid = info["State"]["Pid"]
    status = proc_status(pid)
    if set(status["Uid"]) != {"65532"} or set(status["Gid"]) != {"65532"}:
        fail(f"the process runs as uid {status['Uid']} gid {status['Gid']}")
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status[caps][0], 16) != 0:
            fail(f"{caps} is {status[caps][0]}: capabilities left")
    if status["NoNewPrivs"] != ["1"]:
        fail("no-new-privileges is off")
    ok("the process runs as 65532:65532 with no capabilities and no-new-privileges")
    if "ro" not in mount_options(pid, "/"):
        fail("the root file system is writable")
    if "ro" not in mount_options(pid, "/data"):
        fail("the data mount is writable")
    ok("the root file system and the /data mount are read-only")
    limits = info["HostConfig"]
    if limits["Memory"] != 256 * MIB or limits["PidsLimit"] != 128:
        fail(f"limits: memory {limits['Memory']}, pids {limits['PidsLimit']}")
    ok("memory 256 MiB and 128 pids at most")

    if podman("exec", container, "/usr/local/bin/monolith", "healthcheck", check=False).returncode != 0:
        fail("`monolith healthcheck` failed inside the container")
    wait_healthy(container)
    ok("`monolith healthcheck` passes inside the container; the container is healthy")


def check_moved(args):
    wait_for(f"http://127.0.0.1:{args.port}/readyz", 60)
    try:
        request("GET", f"http://127.0.0.1:{args.old_port}/readyz", timeout=3)
    except OSError:
        ok(f"MONOLITH_PORT={args.port}: served there, no longer on :{args.old_port}")
        return
    fail(f":{args.old_port} still answers after MONOLITH_PORT={args.port}")


def check_down(args):
    [container] = containers(args.project, args.service)
    # Follow the log and the exit code from before the stop: `down` removes the container.
    waiter = subprocess.Popen(["podman", "wait", container], stdout=subprocess.PIPE, text=True)
    logs = subprocess.Popen(["podman", "logs", "-f", container], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    started = time.monotonic()
    subprocess.run(["podman-compose", "-p", args.project, "down"], cwd=args.dir,
                   capture_output=True, check=True)
    took = time.monotonic() - started
    code = waiter.communicate(timeout=30)[0].strip()
    log = logs.communicate(timeout=30)[0].splitlines()
    if code != "0":
        fail(f"the container exited with {code!r}, not 0")
    if took >= args.grace:
        fail(f"down took {took:.1f} s, not within the {args.grace} s grace period")
    records = []
    for line in log:
        try:
            records.append(json.loads(line))
        except ValueError:
            fail(f"a log line that is not JSON: {line!r}")
    bad = [r for r in records if r.get("level") in ("ERROR", "WARN")]
    if bad:
        fail(f"the log has warnings or errors: {bad[:3]}")
    messages = [r.get("message") for r in records]
    if messages[-1:] != ["stopped"]:
        fail(f"the log does not end with the graceful stop: {messages[-5:]}")
    ok(f"down in {took:.1f} s (grace {args.grace} s), exit 0, {len(records)} log lines, none WARN or ERROR")


# ---- the postgres profile ----

def wait_serving(base, seconds):
    """Until `base` answers a database read three times in a row. Under podman a replica's first
    connections can stall on a DNS answer that never comes while its neighbours start (aardvark
    reloading), or its start can time out and the restart policy starts it again: allow for it."""
    deadline = time.monotonic() + seconds
    streak = 0
    last = None
    while streak < 3:
        if time.monotonic() > deadline:
            fail(f"{base} did not serve reads within {seconds} s (last: {last})")
        try:
            status, _, body = request("GET", f"{base}/api/v1/books?limit=1", timeout=5)
            streak = streak + 1 if status == 200 else 0
            last = f"{status} {body if status != 200 else ''}"
        except OSError as error:
            streak, last = 0, str(error)
        if streak < 3:
            time.sleep(1)


def replica_urls(project):
    replicas = containers(project, "monolith-pg")
    if len(replicas) < 2:
        fail(f"{len(replicas)} monolith-pg replica(s) running, not two or more")
    urls = []
    for replica in replicas:
        wait_healthy(replica, 180)
        urls.append(f"http://{ip_of(replica)}:8080")
        wait_serving(urls[-1], 180)
    return urls


def check_postgres_first(args):
    lb = f"http://127.0.0.1:{args.port}"
    first, second = replica_urls(args.project)[:2]
    wait_serving(lb, 60)

    title = f"Durable {time.time_ns()}"
    status, head, book = request("POST", f"{lb}/api/v1/books", {"title": title, "author": "CI"})
    if status != 201:
        fail(f"POST /api/v1/books through the balancer: {status} {book}")
    status, _, user = request("POST", f"{lb}/api/v1/users", {"name": "Ada"})
    status2, head2, _ = request("POST", f"{lb}/api/v1/items", {"item": {"name": "Lamp"}})
    if status != 201 or status2 != 201:
        fail(f"user {status}, item {status2} through the balancer")
    user_id = user["user_id"]
    item_id = head2["Location"].rstrip("/").rsplit("/", 1)[1]

    # A bid through one replica is read back through the other.
    status, _, bid = request("POST", f"{first}/api/v1/bids",
                             {"bid": {"item": item_id, "value": 42, "user": user_id}})
    if status != 201:
        fail(f"POST /api/v1/bids on {first}: {status} {bid}")
    status, _, winning = request("GET", f"{second}/api/v1/items/{item_id}/winning")
    if status != 200 or winning.get("bid_id") != bid["bid_id"]:
        fail(f"the winning bid through {second}: {status} {winning}, placed {bid}")
    ok(f"a bid placed on {first} is the winning bid read on {second}")
    with open(args.state, "w") as state:
        json.dump({"book": book, "bid": bid, "item": item_id}, state)

    # nginx started clean: no warning about its configuration or its limits.
    [balancer] = containers(args.project, "lb")
    log = podman("logs", balancer).stderr + podman("logs", balancer).stdout
    noisy = [line for line in log.splitlines() if any(f"[{level}]" in line for level in ("warn", "alert", "crit", "emerg"))]
    if noisy:
        fail(f"nginx warned: {noisy[:3]}")
    ok("nginx started without a warning")
    ok(f"book {book['id']} created through the balancer on :{args.port}")


def check_postgres_again(args):
    lb = f"http://127.0.0.1:{args.port}"
    replica_urls(args.project)
    wait_serving(lb, 60)
    with open(args.state) as state:
        saved = json.load(state)
    status, _, book = request("GET", f"{lb}/api/v1/books/{saved['book']['id']}")
    if status != 200 or book != saved["book"]:
        fail(f"after down + up the book is {status} {book}, was {saved['book']}")
    status, _, winning = request("GET", f"{lb}/api/v1/items/{saved['item']}/winning")
    if status != 200 or winning != saved["bid"]:
        fail(f"after down + up the winning bid is {status} {winning}, was {saved['bid']}")
    ok("the book and the bid survived down + up (the database volume)")


# ---- the observability profile ----

def check_observability(args):
    prometheus = f"http://127.0.0.1:{args.prometheus}"
    wait_for(f"{prometheus}/-/ready", 60)
    deadline = time.monotonic() + 60
    while True:
        _, _, body = request("GET", f"{prometheus}/api/v1/targets")
        targets = [t for t in body["data"]["activeTargets"] if t["labels"].get("job") == "monolith"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        if time.monotonic() > deadline:
            fail(f"Prometheus' monolith targets are not up: {targets}")
        time.sleep(2)
    ok(f"Prometheus scrapes monolith: {[t['labels']['instance'] for t in targets]} up")
    _, _, rules = request("GET", f"{prometheus}/api/v1/rules")
    groups = [g["name"] for g in rules["data"]["groups"]]
    if "monolith" not in groups:
        fail(f"the alert rules are not loaded: {groups}")
    ok("the alert rules (deploy/prometheus/alerts.yml) are loaded")

    # Grafana has no stand-in: instead each panel query of the dashboard is evaluated by this
    # Prometheus, with Grafana's variables as the dashboard sets them.
    with open(args.dashboard) as dashboard:
        panels = json.load(dashboard)["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", []) if "expr" in t]
    for expr in exprs:
        query = expr.replace("$__rate_interval", "1m").replace("$job", "monolith")
        url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        status, _, body = request("GET", url)
        if status != 200 or body.get("status") != "success":
            fail(f"the dashboard query {expr!r} fails: {status} {body}")
    ok(f"all {len(exprs)} dashboard queries evaluate on Prometheus")


def main():
    parser = argparse.ArgumentParser()
    stages = parser.add_subparsers(dest="stage", required=True)
    image = stages.add_parser("image")
    image.add_argument("image")
    image.add_argument("base")
    default = stages.add_parser("default")
    for name in ("--port", "--key", "--project", "--data"):
        default.add_argument(name, required=True)
    moved = stages.add_parser("moved")
    moved.add_argument("--port", required=True)
    moved.add_argument("--old-port", required=True)
    down = stages.add_parser("down")
    for name in ("--project", "--service", "--dir"):
        down.add_argument(name, required=True)
    down.add_argument("--grace", type=float, required=True)
    for name in ("postgres-first", "postgres-again"):
        stage = stages.add_parser(name)
        for option in ("--port", "--project", "--state"):
            stage.add_argument(option, required=True)
    observability = stages.add_parser("observability")
    observability.add_argument("--prometheus", required=True)
    observability.add_argument("--dashboard", required=True)
    args = parser.parse_args()
    handlers = {
        "image": check_image, "default": check_default, "moved": check_moved, "down": check_down,
        "postgres-first": check_postgres_first, "postgres-again": check_postgres_again,
        "observability": check_observability,
    }
    handlers[args.stage](args)


if __name__ == "__main__":
    main()
