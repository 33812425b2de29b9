#!/bin/sh
# Turn a Debian root filesystem into a systemd test host. Runs inside the image being built
# (a chroot of a debootstrap tree, or a container of debian:SUITE) as root.
# Usage: provision.sh SUITE
set -eu
suite=$1
export DEBIAN_FRONTEND=noninteractive

# Debian's archive by plain HTTP: containers here reach it, and so does any Debian host.
rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${suite} ${suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: ${suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# dpkg as Debian's own container images set it up: no fsync per file (a test container's disk
# is thrown away; packages installed 51 s -> 39 s here) and no manual pages, documentation or
# translations of programs (the slim images' excludes; copyright files stay), so the roles'
# package installs, most of a scenario's converge, spend their time on what the tests check.
cat >/etc/dpkg/dpkg.cfg.d/weblab-test-speedup <<DPKG
force-unsafe-io
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
DPKG
echo 'man-db man-db/auto-update boolean false' | debconf-set-selections
printf 'Acquire::Languages "none";\n' >/etc/apt/apt.conf.d/weblab-test-no-translations

# What every test host needs for Ansible and systemd; a no-op on a debootstrap tree that
# already --include'd them, the work on debian:SUITE.
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    ca-certificates dbus iproute2 procps python3 python3-apt sudo systemd systemd-sysv >/dev/null

# Units that make no sense in a container and only slow the boot or fail.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udevd-control.socket \
            systemd-udevd-kernel.socket systemd-modules-load.service systemd-remount-fs.service \
            sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
            systemd-firstboot.service systemd-networkd-wait-online.service; do
    ln -sf /dev/null "/etc/systemd/system/${unit}"
done

# Each container gets its own machine id at boot.
: >/etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*
# An empty package index is stale: apt cache_valid_time must not trust its fresh mtime.
touch -d @0 /var/lib/apt/lists
