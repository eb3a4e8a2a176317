#!/usr/bin/env bash
# Checks the VM deployment files as far as this machine allows: the install script into a scratch
# root (twice: the second run must change nothing), then `systemd-analyze verify` of the unit
# inside that root, failing on any warning it prints. Usage: check_deploy.sh path/to/monolith
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

DESTDIR=$root bash deploy/install.sh "$binary"
second=$(DESTDIR=$root bash deploy/install.sh "$binary")
[ "$second" = "nothing to change" ] || { echo "second install run changed: $second"; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze not available: unit not verified"
  exit 0
fi
# The scratch root needs systemd's own units and the commands the unit names.
mkdir -p "$root/usr/lib" "$root/usr/bin" "$root/tmp"
cp -a /usr/lib/systemd "$root/usr/lib/"
cp "$(type -P kill)" "$root/usr/bin/kill"
[ -e "$root/bin" ] || ln -s usr/bin "$root/bin"
out=$(systemd-analyze verify --root="$root" "$root/etc/systemd/system/monolith.service" 2>&1) || {
  echo "$out"; exit 1; }
# This systemd release does not know every syscall of its own @system-service set: harmless.
problems=$(printf '%s\n' "$out" | grep -v -e '^$' -e 'Failed to parse system call' || true)
if [ -n "$problems" ]; then
  echo "systemd-analyze verify:"; echo "$problems"; exit 1
fi
echo "unit verified"
