"""Pack a source directory into a reproducible release archive, named by its content.

Usage: python pack_tree.py SOURCE_DIR TEMP_DIR [--check]

The archive goes to TEMP_DIR/weblab-stack-releases-UID, a directory private to the user running
this (mode 0700, owned by them); it is created when missing and refused when it is anything else
(a link, a file, another user's, a mode that lets others in), so nobody else can plant or swap the
code that is uploaded to the hosts. With --check nothing is written: the name is computed and
"created" says whether a real run would write the archive.

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
import stat
import sys
import tarfile
import tempfile

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox", ".venv"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class UnsafeDirectory(Exception):
    """The output directory is not private to this user."""


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


def private_dir_path(temp_dir):
    """The per-user output directory under TEMP_DIR."""
    return os.path.join(temp_dir, "weblab-stack-releases-%d" % os.getuid())


def check_private(path, info):
    """Refuse PATH (lstat INFO) unless it is a real directory of this user that only they can
    use: a link is never followed, another user's directory is never trusted."""
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeDirectory("%s is a symbolic link, not a private directory; remove it" % path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory("%s exists and is not a directory; remove it" % path)
    if info.st_uid != os.getuid():
        raise UnsafeDirectory("%s belongs to uid %d, not to this user (uid %d); remove it or set "
                              "TMPDIR to a directory of your own" % (path, info.st_uid, os.getuid()))
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafeDirectory("%s has mode %04o: others could change the archives in it; remove it "
                              "(it is recreated with mode 0700)" % (path, stat.S_IMODE(info.st_mode)))


def private_dir(temp_dir, create=True):
    """The per-user output directory, created with mode 0700 when missing (and CREATE); returns
    (path, exists). Raises UnsafeDirectory when it exists and is not private."""
    parent = os.stat(temp_dir)
    if parent.st_mode & 0o002 and not parent.st_mode & stat.S_ISVTX:
        # Without the sticky bit anyone may rename our directory away and put theirs in its place.
        raise UnsafeDirectory("%s is writable by everyone and not sticky; set TMPDIR to a directory "
                              "of your own" % temp_dir)
    path = private_dir_path(temp_dir)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return path, False
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            # Someone made it between the lstat and the mkdir: judge what is there now.
            pass
        info = os.lstat(path)
    check_private(path, info)
    return path, True


def write_archive(root, files, out_dir, target):
    """A tar.gz with fixed owners and times: the same tree gives the same bytes. Written to a
    new temporary file in OUT_DIR and renamed over TARGET."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            info = tar.gettarinfo(os.path.join(root, rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(os.path.join(root, rel), "rb") as handle:
                tar.addfile(info, handle)
    handle, temp = tempfile.mkstemp(dir=out_dir, prefix=".pack-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as raw:
            # No file name in the gzip header (it would be the random temporary name).
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as packed:
                packed.write(buffer.getvalue())
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise


def archive_exists(target):
    """Whether TARGET is an archive this run can reuse: a regular file (never a link)."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeDirectory("%s is not a regular file; remove it" % target)
    return True


def pack(root, temp_dir, check=False):
    """Pack ROOT into the private directory under TEMP_DIR; the result printed by main()."""
    if not os.path.isdir(root):
        raise ValueError("app_source_path: %s is not a directory" % root)
    files = tree_files(root)
    name = tree_hash(root, files)
    out_dir, exists = private_dir(temp_dir, create=not check)
    target = os.path.join(out_dir, "%s.tar.gz" % name)
    created = not (exists and archive_exists(target))
    if created and not check:
        write_archive(root, files, out_dir, target)
    return {"name": name, "archive": target, "created": created}


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [arg for arg in args if arg != "--check"]
    if len(args) != 2:
        sys.exit("usage: pack_tree.py SOURCE_DIR TEMP_DIR [--check]")
    try:
        result = pack(args[0], args[1], check=check)
    except (ValueError, UnsafeDirectory) as exc:
        sys.exit(str(exc))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
