#!/usr/bin/env bash
# Makes the stand-in base images that the Dockerfile and docker-compose.yml name, from Debian's
# packages (no registry holds the real ones here): ../../shared/CONTAINERS.md explains why.
# Each is tagged with the real image's name and labelled with a hash of its recipe; an image
# whose label matches is kept, so a warm run builds nothing. Stand-ins serve this test only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /var/tmp/monolith-standins.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A Debian release as a base image, from debootstrap (minbase: apt, dpkg and coreutils).
debian_base() {
  local suite=$1 tag=localhost/debian:$1-slim
  podman image exists "$tag" && return
  echo "stand-ins: debootstrap $suite"
  debootstrap --variant=minbase "$suite" "$work/rootfs-$suite" http://deb.debian.org/debian >/dev/null
  rm -rf "$work/rootfs-$suite"/var/cache/apt/archives/*.deb "$work/rootfs-$suite"/var/lib/apt/lists/*
  tar -C "$work/rootfs-$suite" -c . | podman import --quiet - "$tag" >/dev/null
  rm -rf "$work/rootfs-$suite"
}

# The hash of a stand-in's recipe: its folder under standins/, plus whatever else goes in ($2).
recipe_of() { (cd "$here/standins/$1" && sha256sum ./*; echo "${2:-}") | sha256sum | cut -c1-16; }
is_current() { [ "$(podman image inspect --format '{{index .Labels "monolith.standin"}}' "$1" 2>/dev/null)" = "$2" ]; }

# Builds one stand-in from its folder under standins/ (or the context $4), unless an image of
# that recipe is already tagged.
standin() {
  local name=$1 tag=$2 recipe=$3 context=${4:-$here/standins/$1}
  is_current "$tag" "$recipe" && return
  echo "stand-ins: building $tag"
  local old
  old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  podman build --quiet --network host --format docker --label "monolith.standin=$recipe" \
    -t "$tag" -f "$here/standins/$name/Containerfile" "$context" >/dev/null
  # The image of the older recipe, now untagged (kept if a container still uses it).
  if [ -n "$old" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
}

debian_base bookworm
debian_base trixie
debian_base sid

# rust:1-slim-bookworm gets this machine's toolchain, under the name rust-toolchain.toml gives it.
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$repo/rust-toolchain.toml")
host=$(rustc -vV | sed -n 's/^host: //p')
rust_recipe=$(recipe_of rust "$channel-$host $(cd "$repo" && rustc -V)")
if ! is_current docker.io/library/rust:1-slim-bookworm "$rust_recipe"; then
  sysroot=$(cd "$repo" && rustc --print sysroot)
  ctx=$work/rust
  mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo/bin"
  # Hard links where the file system allows: the toolchain is ~1.4 GB.
  cp -al "$sysroot/." "$ctx/rustup/toolchains/$channel-$host" 2>/dev/null ||
    cp -a "$sysroot/." "$ctx/rustup/toolchains/$channel-$host"
  rm -rf "$ctx/rustup/toolchains/$channel-$host/share/doc"
  printf 'version = "12"\ndefault_toolchain = "%s-%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
    "$channel" "$host" >"$ctx/rustup/settings.toml"
  cp "$(command -v rustup)" "$ctx/cargo/bin/rustup"
  for proxy in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do
    ln -s rustup "$ctx/cargo/bin/$proxy"
  done
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  standin rust docker.io/library/rust:1-slim-bookworm "$rust_recipe" "$ctx"
  rm -rf "$ctx"
fi

for spec in distroless:gcr.io/distroless/cc-debian12:nonroot postgres:docker.io/library/postgres:17 \
  nginx:docker.io/library/nginx:1.28 prometheus:docker.io/prom/prometheus:v3.5.0; do
  name=${spec%%:*}
  standin "$name" "${spec#*:}" "$(recipe_of "$name")"
done
