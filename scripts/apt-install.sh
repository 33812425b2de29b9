#!/usr/bin/env bash
# Install Debian packages on the controller when a command is missing: apt-install.sh PKG...
# Refreshes the package index first when it is older than a day (a fresh machine has none).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "apt-install: installing $* needs root (or install them yourself)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Parallel callers (the two image builds) take turns instead of failing on dpkg's lock.
exec 9>/var/lock/weblab-apt-install.lock
flock 9
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
    apt-get update -qq -o DPkg::Lock::Timeout=600
fi
echo "apt-install: installing $*" >&2
apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$@" >/dev/null
