"""Pack a source directory into a reproducible release archive, named by its content.

Usage: python pack_tree.py SOURCE_DIR OUTPUT_DIR

Prints the JSON {"name": ..., "archive": ..., "created": bool}. The name is the first 12 hex
digits of a sha256 over the relative paths, modes and contents of the files that go into the
release (version-control metadata and Python caches stay out), so the same tree always gets the
same name and the same bytes, on every run and for every host of a deploy.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox", ".venv"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def tree_files(root):
    """Relative paths of the files to release, sorted."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in files:
            if not name.endswith(SKIP_SUFFIXES):
                found.append(os.path.relpath(os.path.join(directory, name), root))
    return sorted(found)


def tree_hash(root, files):
    digest = hashlib.sha256()
    for rel in files:
        path = os.path.join(root, rel)
        digest.update(rel.encode() + b"\0" + oct(os.stat(path).st_mode & 0o777).encode() + b"\0")
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()[:12]


def write_archive(root, files, target):
    """A tar.gz with fixed owners and times: the same tree gives the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            info = tar.gettarinfo(os.path.join(root, rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(os.path.join(root, rel), "rb") as handle:
                tar.addfile(info, handle)
    temp = target + ".tmp"
    with open(temp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
            packed.write(buffer.getvalue())
    os.replace(temp, target)


def main():
    root, out_dir = sys.argv[1], sys.argv[2]
    if not os.path.isdir(root):
        sys.exit(f"app_source_path: {root} is not a directory")
    files = tree_files(root)
    name = tree_hash(root, files)
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, f"{name}.tar.gz")
    created = not os.path.exists(target)
    if created:
        write_archive(root, files, target)
    print(json.dumps({"name": name, "archive": target, "created": created}))


if __name__ == "__main__":
    main()
