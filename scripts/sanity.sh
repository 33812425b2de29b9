#!/usr/bin/env bash
# ansible-test sanity over the collection, in --venv mode, offline (no ignore file).
# Usage: sanity.sh COLLECTION_DIR (a path ending in ansible_collections/weblab/stack)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
collection=${1:?usage: sanity.sh COLLECTION_DIR}

# ansible-test would download get-pip.py for each pip version it bootstraps; provide the
# stand-in for the versions this ansible-core asks for, unless a real bootstrap is cached.
requirements=$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
grep -oE "pip='[0-9.]+'" "$requirements" | grep -oE '[0-9.]+' | sort -u | while read -r version; do
    target="$cache/get_pip_${version//./_}.py"
    [ -e "$target" ] || cp "$here/get_pip_offline.py" "$target"
done

# Without shellcheck, ansible-test silently skips the shell script test.
if ! command -v shellcheck >/dev/null 2>&1; then
    "$here/apt-install.sh" shellcheck
fi

python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cd "$collection"
ansible-test sanity --venv --python "$python_version" --color no --requirements
