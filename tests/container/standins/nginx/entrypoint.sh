#!/bin/sh
# Docker answers DNS inside every container on 127.0.0.11, and deploy/nginx/nginx.conf relies on
# it (`resolver 127.0.0.11`). Podman's DNS server sits on the network's gateway instead, so the
# stand-in relays 127.0.0.11:53 to the resolver the container was given: the engine's difference,
# made up for here, never in the project's files.
set -eu
upstream=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
if [ -n "$upstream" ] && [ "$upstream" != 127.0.0.11 ]; then
  socat -T5 UDP4-RECVFROM:53,bind=127.0.0.11,fork "UDP4-SENDTO:$upstream:53" &
fi
exec "$@"
