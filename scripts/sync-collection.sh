#!/usr/bin/env bash
# Mirror the checkout into .build/ansible_collections/weblab/stack, the path Ansible, Molecule
# and ansible-test expect a collection at. What .gitignore ignores (.venv, .build, caches)
# stays out; files deleted from the checkout disappear from the mirror.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.build/ansible_collections/weblab/stack"
command -v rsync >/dev/null 2>&1 || "$root/scripts/apt-install.sh" rsync
mkdir -p "$dest"
# Several make targets may sync at once (parallel scenarios); one at a time.
exec 9>"$root/.build/.sync.lock"
flock 9
cd "$root"
rsync -a --delete --exclude=/.git --filter=':- .gitignore' ./ "$dest/"
# ansible-test lists a collection's files with git when it sees a repository; give it one that
# holds exactly the mirrored files.
cd "$dest"
git init -q 2>/dev/null || true
git add -A >/dev/null
echo "$dest"
