#!/usr/bin/env bash
# Build (or reuse) the systemd test image for one Debian release.
#
# Usage: build-image.sh debian12|debian13
#
# The image is tagged weblab-stack/NAME:RECIPE where RECIPE is a hash of everything that goes
# into it (this script and images/provision.sh); an image with the current tag is reused.
# weblab-stack/NAME:latest always points at the current recipe, and Molecule uses that.
# The base is debian:SUITE when a registry answers, otherwise a debootstrap root filesystem
# from Debian's archive imported into Docker.
set -euo pipefail

name=${1:?usage: build-image.sh debian12|debian13}
case "$name" in
    debian12) suite=bookworm ;;
    debian13) suite=trixie ;;
    *) echo "build-image: unknown image '$name' (debian12 or debian13)" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
repo=weblab-stack/$name
recipe=$(cat "$0" "$here/images/provision.sh" | sha256sum | cut -c1-12)
say() { printf 'build-image %s: %s\n' "$name" "$*" >&2; }

if docker image inspect "$repo:$recipe" >/dev/null 2>&1; then
    docker tag "$repo:$recipe" "$repo:latest"
    say "reusing $repo:$recipe (recipe unchanged)"
    exit 0
fi

start=$(date +%s)
# How the image starts: systemd as PID 1, told it runs in a container.
changes=(--change 'CMD ["/lib/systemd/systemd"]'
         --change 'ENV container=docker' --change "LABEL org.weblab.recipe=$recipe")

if timeout 120 docker pull "debian:$suite" >/dev/null 2>&1; then
    say "provisioning from debian:$suite"
    cid=$(docker create -e container=docker -v "$here/images/provision.sh:/provision.sh:ro" \
          "debian:$suite" /provision.sh "$suite")
    trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
    docker start -a "$cid"
    docker commit "${changes[@]}" "$cid" "$repo:$recipe" >/dev/null
else
    say "no registry answers; building from debootstrap ($mirror)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        "$here/scripts/apt-install.sh" debootstrap
    fi
    root=$(mktemp -d "${TMPDIR:-/tmp}/weblab-$name.XXXXXX")
    trap 'rm -rf "$root" "$root.log"' EXIT
    debootstrap --variant=minbase \
        --include=ca-certificates,dbus,iproute2,procps,python3,python3-apt,sudo,systemd,systemd-sysv \
        "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    cp "$here/images/provision.sh" "$root/provision.sh"
    # The chroot needs name resolution to reach the archive.
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" /bin/sh /provision.sh "$suite" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    rm -f "$root/provision.sh" "$root/etc/resolv.conf"
    tar -C "$root" -c . | docker import "${changes[@]}" - "$repo:$recipe" >/dev/null
fi
docker tag "$repo:$recipe" "$repo:latest"
say "built $repo:$recipe in $(( $(date +%s) - start ))s"
