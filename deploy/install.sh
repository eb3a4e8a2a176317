#!/usr/bin/env bash
# Installs or updates monolith as a systemd service: the binary, the seed data, the unit and an
# environment file, then (re)starts the service. Idempotent: a second run with the same inputs
# changes nothing and restarts nothing.
#
#   sudo deploy/install.sh [path/to/monolith]          # default: target/release/monolith
#   DESTDIR=/tmp/root deploy/install.sh …              # stage into a scratch root, no systemctl
#
# The environment file /etc/monolith/monolith.env is created once, with a fresh SECRET_KEY, and
# never overwritten: it is the operator's.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
binary=${1:-$repo/target/release/monolith}
destdir=${DESTDIR:-}
changed=0

[ -x "$binary" ] || { echo "install: no executable at $binary (build with: cargo build --release --locked)" >&2; exit 1; }

# Puts $1 at $2 with mode $3 unless the same content is there already.
put() {
  local source=$1 target=$destdir$2 mode=$3
  if [ -f "$target" ] && cmp -s "$source" "$target"; then
    if [ "$(stat -c %a "$target")" != "$mode" ]; then
      chmod "$mode" "$target"; echo "mode   $2"; changed=1
    fi
    return
  fi
  install -D -m "$mode" "$source" "$target"
  echo "update $2"
  changed=1
}

put "$binary" /usr/local/bin/monolith 755
for file in "$repo"/data/*.json; do
  put "$file" "/usr/local/share/monolith/data/$(basename "$file")" 644
done
put "$here/systemd/monolith.service" /etc/systemd/system/monolith.service 644

env_file=$destdir/etc/monolith/monolith.env
if [ ! -e "$env_file" ]; then
  install -d -m 755 "$(dirname "$env_file")"
  umask 077
  {
    echo "# monolith settings; see .env.example in the repository for every variable."
    echo "SECRET_KEY=$("$binary" secret)"
    echo "RATE_LIMIT_PER_SECOND=20"
    echo "RATE_LIMIT_BURST=40"
  } > "$env_file"
  chmod 600 "$env_file"
  echo "create /etc/monolith/monolith.env (with a new SECRET_KEY)"
  changed=1
fi

if [ -n "$destdir" ] || ! command -v systemctl >/dev/null; then
  [ "$changed" = 1 ] || echo "nothing to change"
  exit 0
fi

systemctl daemon-reload
systemctl enable --quiet monolith.service
if [ "$changed" = 1 ]; then
  systemctl restart monolith.service
  echo "restarted monolith.service"
elif ! systemctl is-active --quiet monolith.service; then
  systemctl start monolith.service
  echo "started monolith.service"
else
  echo "nothing to change"
fi
