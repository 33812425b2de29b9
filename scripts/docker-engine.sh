#!/usr/bin/env bash
# Make sure a Docker engine answers.
#
# An engine that already answers is left alone. Otherwise Debian's docker.io is installed when
# dockerd is missing, dockerd is started in the background (this machine has no systemd as
# PID 1) and the script waits until `docker info` answers.
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/weblab-dockerd.log}
timeout=${DOCKERD_TIMEOUT:-120}

say() { printf 'docker-engine: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    say "an engine already answers; leaving it alone"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    "$(dirname "$0")/apt-install.sh" docker.io
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd (log: $log)"
    # setsid: the engine outlives the make run that started it.
    setsid nohup dockerd >"$log" 2>&1 </dev/null &
fi

for _ in $(seq "$timeout"); do
    if docker info >/dev/null 2>&1; then
        say "engine answers"
        exit 0
    fi
    sleep 1
done
say "no answer from dockerd after ${timeout}s; last lines of $log:"
tail -n 20 "$log" >&2 || true
exit 1
