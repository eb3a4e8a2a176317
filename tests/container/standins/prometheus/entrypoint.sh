#!/bin/sh
# docker-compose.yml gives /prometheus a tmpfs, which Docker mounts world-writable and podman
# owned by root (mode 755), where user nobody cannot write: under podman the data goes to /tmp
# (podman's own tmpfs on a read-only root). Otherwise the official image's command, unchanged.
set -eu
if [ -w /prometheus ]; then exec /usr/bin/prometheus "$@"; fi
storage=/tmp/prometheus
mkdir -p "$storage"
for arg; do
  shift
  case $arg in
    --storage.tsdb.path=*) set -- "$@" "--storage.tsdb.path=$storage" ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec /usr/bin/prometheus "$@"
