#!/usr/bin/env bash
# Create .venv with the pinned toolchain (requirements-dev.txt); reuse it while the pins hold.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
# make puts .venv/bin first on PATH: rebuilding the venv from its own python3 would break it.
python=${PYTHON:-$(PATH=$(printf %s "$PATH" | tr : '\n' | grep -vxF "$venv/bin" | paste -sd:) command -v python3)}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$root/requirements-dev.txt" | cut -d' ' -f1)

fresh() { [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; }
fresh && exit 0
# Two make targets started side by side must not build the same venv at once.
exec 9>"$root/.venv.lock"
flock 9
fresh && exit 0
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    "$root/scripts/apt-install.sh" python3-venv
fi
echo "venv: installing the pinned toolchain into .venv" >&2
"$python" -m venv --clear "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$root/requirements-dev.txt"
echo "$want" >"$stamp"
