#!/usr/bin/env bash
# The container path, for real: builds the image from the repository's Dockerfile and runs the
# repository's docker-compose.yml, both unchanged, with podman and podman-compose on stand-in
# base images (standins.sh), then checks over HTTP and from the host what a user would rely on.
# Every profile runs: the default one, `postgres` (PostgreSQL, two replicas, nginx) and
# `observability` (Prometheus; Grafana has no Debian package to make a stand-in from).
# Run as root on a machine with Debian's packages reachable (CI does: .ci/run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
project=monolith-test
step() { printf '\n--- container: %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "tools: podman, runc, debootstrap, podman-compose"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  as_root apt-get update -qq
  # With podman's recommends (as tested here): netavark, aardvark-dns, iptables, slirp4netns.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    podman runc debootstrap debian-archive-keyring >/dev/null
fi
export CONTAINERS_CONF=$here/containers.conf
# Debian's podman-compose (1.0.3) cannot read the long `env_file` form; 1.6 from PyPI can.
podman-compose version 2>/dev/null | grep -q 'podman-compose version 1\.[6-9]' ||
  python3 -m pip install --quiet --disable-pip-version-check 'podman-compose==1.6.0'
podman --version
podman-compose version | head -n 1

step "stand-in base images"
bash "$here/standins.sh"

step "build the image from the Dockerfile (unchanged)"
# --format docker keeps the Dockerfile's HEALTHCHECK (the OCI format has none).
start=$SECONDS
build_log=$(mktemp)
previous=$(podman image inspect --format '{{.Id}}' monolith:local 2>/dev/null || true)
if ! podman build --network host --format docker -t monolith:local "$repo" >"$build_log" 2>&1; then
  tail -n 60 "$build_log"; fail "the image did not build"
fi
rm -f "$build_log"
# The previous build, now untagged (its layers stay as the build cache).
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' monolith:local)" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
echo "built monolith:local in $((SECONDS - start)) s"

# The compose project in a scratch folder: the compose file, data/ and deploy/ copied unchanged,
# so the test can put a .env next to the compose file without touching the working tree.
dir=$(mktemp -d /var/tmp/monolith-compose.XXXXXX)
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "--- container: failed; the containers and their last log lines"
    podman ps -a --filter "label=io.podman.compose.project=$project"
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
      echo "--- $c"; podman logs --tail 15 "$c" 2>&1
    done
    echo "--- podman-compose"; tail -n 30 "$dir/compose.log" 2>/dev/null
  fi
  (cd "$dir" && podman-compose -p "$project" --profile postgres --profile observability down -v -t 5) >/dev/null 2>&1 || true
  [ -n "${health_driver:-}" ] && kill "$health_driver" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cp "$repo/docker-compose.yml" "$dir/"
cp -r "$repo/data" "$repo/deploy" "$dir/"
cmp "$repo/docker-compose.yml" "$dir/docker-compose.yml"
# podman-compose's own chatter (podman's complaints about the missing systemd, container ids)
# goes to a log that is shown if the test fails.
compose() { (cd "$dir" && podman-compose -p "$project" "$@") >>"$dir/compose.log" 2>&1; }

python3 "$here/check.py" image monolith:local gcr.io/distroless/cc-debian12:nonroot

# The engine runs healthchecks on a timer; podman does that through systemd, which this machine
# lacks. This loop is that timer: every 2 s it runs each container's own healthcheck.
drive_health() {
  while sleep 2; do
    for c in $(podman ps --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
      podman healthcheck run "$c" >/dev/null 2>&1 || true
    done
  done
}
drive_health &
health_driver=$!

step "default profile: up, with a .env next to the compose file"
key=$("$repo/target/release/monolith" secret 2>/dev/null || python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
# PORT in .env must lose to the compose file's own; SECRET_KEY must arrive.
printf 'SECRET_KEY=%s\nPORT=9999\nDEFAULT_PAGE_SIZE=7\n' "$key" >"$dir/.env"
compose up -d --no-build monolith
python3 "$here/check.py" default --port 8080 --key "$key" --project "$project" --data "$dir/data"

step "MONOLITH_PORT moves the published port"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MONOLITH_PORT=$port compose up -d --no-build monolith
python3 "$here/check.py" moved --port "$port" --old-port 8080

step "down: within the grace period, exit 0, a clean log"
python3 "$here/check.py" down --project "$project" --service monolith --dir "$dir" --grace 15

step "postgres profile: PostgreSQL, two replicas, nginx"
lb_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "LB_PORT=$lb_port" >"$dir/.env"
LB_PORT=$lb_port compose --profile postgres up -d --no-build
python3 "$here/check.py" postgres-first --port "$lb_port" --project "$project" --state "$dir/state.json"
compose --profile postgres down -t 20
LB_PORT=$lb_port compose --profile postgres up -d --no-build
python3 "$here/check.py" postgres-again --port "$lb_port" --project "$project" --state "$dir/state.json"
compose --profile postgres down -v -t 20

step "observability profile: Prometheus scrapes monolith; the dashboard's queries evaluate"
prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$dir/.env"
# Grafana: no stand-in (not packaged by Debian); its service is left out by name.
PROMETHEUS_PORT=$prom_port compose --profile observability up -d --no-build monolith prometheus
python3 "$here/check.py" observability --prometheus "$prom_port" --dashboard "$dir/deploy/grafana/monolith.json"
compose --profile observability down -t 20

echo "container: ok"
