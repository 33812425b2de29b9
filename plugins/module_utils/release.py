# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Releases under a deploy path, the Capistrano way, for the weblab.stack.release module.

Standard library only, no Ansible imports: the module wraps it, tests drive it directly.

Layout under PATH::

    releases/NAME/        one directory per release
    shared/               files and directories that outlive releases (linked into them)
    repo/                 source mirror (used by the app role)
    venvs/                virtualenvs (used by the app role; never touched here)
    current -> releases/NAME
    releases.json         the manifest: state, revision and times of each release
    .weblab-release.lock  flock(2) target held while an operation runs

What is live is read from the ``current`` link, never from times. The state of a release
(unfinished, good, failed, abandoned) lives only in the manifest, never inside the release
directory, so nothing written here ends up in a release's code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time

MANIFEST = 'releases.json'
LOCK = '.weblab-release.lock'
CURRENT = 'current'
RELEASES = 'releases'
SHARED = 'shared'
REPO = 'repo'
LAYOUT = (RELEASES, SHARED, REPO)
MANIFEST_FORMAT = 1
HISTORY_LENGTH = 50

UNFINISHED = 'unfinished'
GOOD = 'good'
FAILED = 'failed'
ABANDONED = 'abandoned'
UNKNOWN = 'unknown'
BAD_STATES = (FAILED, ABANDONED)


class ReleaseError(Exception):
    """An operation cannot be done; the message says why and names what to fix."""


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def check_release_name(name, parameter='release'):
    """Return NAME if it is usable as a directory under releases/, else raise ReleaseError."""
    if not isinstance(name, str) or name == '':
        raise ReleaseError('%s must be a non-empty release name' % parameter)
    if '/' in name or '\0' in name:
        raise ReleaseError('%s must be a single directory name without "/": got %r' % (parameter, name))
    if name.startswith('.'):
        raise ReleaseError('%s must not start with ".": got %r' % (parameter, name))
    if len(name.encode('utf-8')) > 255:
        raise ReleaseError('%s is longer than 255 bytes' % parameter)
    return name


def check_shared_paths(paths, parameter='shared_paths'):
    """Return the normalised relative paths, else raise ReleaseError naming PARAMETER."""
    result = []
    for item in paths or []:
        if not isinstance(item, str) or item.strip() == '':
            raise ReleaseError('%s: every item must be a non-empty relative path, got %r' % (parameter, item))
        if '\0' in item:
            raise ReleaseError('%s: %r contains a NUL byte' % (parameter, item))
        if os.path.isabs(item):
            raise ReleaseError('%s: %r is absolute; give a path relative to shared/' % (parameter, item))
        if '..' in item.split('/'):
            raise ReleaseError('%s: %r contains "..": paths must stay inside shared/' % (parameter, item))
        norm = os.path.normpath(item)
        if norm in ('.', ''):
            raise ReleaseError('%s: %r names shared/ itself, not a path inside it' % (parameter, item))
        if norm in result:
            continue
        result.append(norm)
    for outer in result:
        for inner in result:
            if inner != outer and inner.startswith(outer + '/'):
                raise ReleaseError('%s: %r is inside %r, which is already linked as a whole'
                                   % (parameter, inner, outer))
    return result


def check_keep(keep, parameter='keep'):
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ReleaseError('%s must be an integer of at least 1 (the live release always stays): got %r'
                           % (parameter, keep))
    return keep


def fsync_dir(path):
    """Make a rename or a new entry in directory PATH durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DeployLock:
    """An exclusive flock(2) on PATH/.weblab-release.lock, waited for up to TIMEOUT seconds.

    With create=False (check mode, query) the lock file is never created: when it does not
    exist there is nothing to lock against and nothing is written. The holder writes who it
    is into the file, so a waiter that gives up can name it.
    """

    def __init__(self, path, timeout, create=True, holder=None, poll=0.1):
        self.lock_path = os.path.join(path, LOCK)
        self.timeout = timeout
        self.create = create
        self.holder = holder
        self.poll = poll
        self.fd = None
        self.writable = False

    def _open(self):
        if self.create:
            try:
                self.writable = True
                return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except PermissionError:
                # Another user owns the file; flock(2) works on a read-only descriptor too.
                self.writable = False
        try:
            return os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None

    def _holder_text(self):
        try:
            with open(self.lock_path, 'r', encoding='utf-8', errors='replace') as handle:
                text = handle.read().strip()
        except OSError:
            text = ''
        return text or 'unknown holder (it did not record itself)'

    def acquire(self):
        fd = self._open()
        if fd is None:
            return self
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = self._holder_text()
                os.close(fd)
                raise ReleaseError('another deploy holds the lock %s and did not release it within '
                                   'lock_timeout=%s seconds; holder: %s'
                                   % (self.lock_path, self.timeout, holder))
            time.sleep(self.poll)
        self.fd = fd
        if self.writable and self.holder:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (self.holder + '\n').encode('utf-8'))
        return self

    def release(self):
        if self.fd is None:
            return
        try:
            if self.writable and self.holder:
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def default_holder(state, release):
    return 'pid %d on %s since %s (state=%s, release=%s)' % (
        os.getpid(), socket.gethostname(), utcnow(), state, release)


class Releases:
    """The releases under one deploy path: a model read from disk, changed in memory, and
    written back unless in check mode.

    Every change is appended to ``actions`` (one human-readable line each) whether or not
    it was carried out, so check mode reports exactly what a real run does.
    """

    def __init__(self, path, check_mode=False):
        self.path = os.path.abspath(path)
        self.check_mode = check_mode
        self.releases_dir = os.path.join(self.path, RELEASES)
        self.shared_dir = os.path.join(self.path, SHARED)
        self.current_path = os.path.join(self.path, CURRENT)
        self.manifest_path = os.path.join(self.path, MANIFEST)
        self.actions = []
        self.removed = []
        self.linked = []
        self.warnings = []
        self.manifest_dirty = False
        self.switched_from = None
        self.load()
        self.before = self.snapshot()

    # ---- reading -----------------------------------------------------------------------

    def load(self):
        self.exists = os.path.isdir(self.path)
        self.manifest = self._read_manifest()
        self.on_disk = self._list_release_dirs()
        self.layout_missing = [name for name in LAYOUT
                               if not os.path.isdir(os.path.join(self.path, name))]
        self.current_target, self.live = self._read_current()

    def _read_manifest(self):
        try:
            with open(self.manifest_path, 'r', encoding='utf-8') as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {'format': MANIFEST_FORMAT, 'seq': 0, 'releases': [], 'history': []}
        except ValueError as exc:
            raise ReleaseError('the manifest %s is not valid JSON (%s); repair it or move it away'
                               % (self.manifest_path, exc))
        if (not isinstance(data, dict) or not isinstance(data.get('releases'), list)
                or not all(isinstance(item, dict) and isinstance(item.get('name'), str)
                           for item in data['releases'])):
            raise ReleaseError('the manifest %s does not hold a "releases" list of named entries; '
                               'repair it or move it away' % self.manifest_path)
        if data.get('format', MANIFEST_FORMAT) != MANIFEST_FORMAT:
            raise ReleaseError('the manifest %s has format %r; this module reads format %d'
                               % (self.manifest_path, data.get('format'), MANIFEST_FORMAT))
        data.setdefault('format', MANIFEST_FORMAT)
        data.setdefault('seq', 0)
        data.setdefault('history', [])
        return data

    def _list_release_dirs(self):
        try:
            names = os.listdir(self.releases_dir)
        except FileNotFoundError:
            return set()
        except NotADirectoryError:
            raise ReleaseError('%s exists and is not a directory' % self.releases_dir)
        # Dot entries are never releases (names cannot start with "."): temporary and
        # half-removed directories live there.
        return set(name for name in names
                   if not name.startswith('.') and os.path.isdir(os.path.join(self.releases_dir, name)))

    def _read_current(self):
        """Return (link text, live release name or None), from the current link alone."""
        try:
            target = os.readlink(self.current_path)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise ReleaseError('%s exists and is not a symbolic link; move it away so it can be '
                                   'managed as a link to a release' % self.current_path)
            raise
        absolute = os.path.normpath(target if os.path.isabs(target) else os.path.join(self.path, target))
        parent, name = os.path.split(absolute)
        same_parent = parent == self.releases_dir
        if not same_parent and os.path.isdir(parent) and os.path.isdir(self.releases_dir):
            same_parent = os.path.samefile(parent, self.releases_dir)
        if same_parent and name and not name.startswith('.'):
            return target, name
        return target, None

    def entry(self, name):
        for item in self.manifest['releases']:
            if item['name'] == name:
                return item
        return None

    def state_of(self, name):
        item = self.entry(name)
        if item is None:
            return GOOD if name == self.live else UNKNOWN
        return item.get('state', UNKNOWN)

    def names(self):
        """Every release known from the manifest or from disk, manifest order first."""
        ordered = [item['name'] for item in self.manifest['releases']]
        ordered.extend(sorted(self.on_disk - set(ordered)))
        if self.live and self.live not in ordered:
            ordered.append(self.live)
        return ordered

    def previous_good(self):
        """The release a rollback goes to: the good release, other than the live one, that was
        live most recently (manifest sequence numbers, never file times), and still exists."""
        best = None
        for item in self.manifest['releases']:
            name = item['name']
            if name == self.live or item.get('state') != GOOD or name not in self.on_disk:
                continue
            if best is None or item.get('live_seq', 0) > best.get('live_seq', 0):
                best = item
        return best['name'] if best else None

    def snapshot(self):
        return {
            'current': self.current_target,
            'live': self.live,
            'releases': dict((name, self.state_of(name)) for name in self.names()
                             if name in self.on_disk),
        }

    def release_list(self):
        result = []
        for name in self.names():
            item = self.entry(name) or {}
            result.append({
                'name': name,
                'state': self.state_of(name),
                'live': name == self.live,
                'exists': name in self.on_disk,
                'path': os.path.join(self.releases_dir, name),
                'revision': item.get('revision'),
                'created': item.get('created'),
                'switched': item.get('switched'),
                'previous': item.get('previous'),
                'failed': item.get('failed'),
                'abandoned': item.get('abandoned'),
                'settings': item.get('settings'),
            })
        return result

    # ---- changing ----------------------------------------------------------------------

    def act(self, text):
        self.actions.append(text)
        return not self.check_mode

    def _touch_manifest(self):
        self.manifest_dirty = True

    def _next_seq(self):
        self.manifest['seq'] = int(self.manifest.get('seq', 0)) + 1
        return self.manifest['seq']

    def _new_entry(self, name, state):
        item = {'name': name, 'state': state, 'revision': None, 'created': utcnow(), 'switched': None,
                'live_seq': 0, 'previous': None, 'failed': None, 'abandoned': None}
        self.manifest['releases'].append(item)
        self._touch_manifest()
        return item

    def _set_state(self, name, state, text):
        item = self.entry(name) or self._new_entry(name, state)
        if item.get('state') != state:
            item['state'] = state
            self._touch_manifest()
        self.act(text)
        return item

    def _record_revision(self, item, revision):
        if revision is not None and item.get('revision') != revision:
            self.act('record revision %s for release %s' % (revision, item['name']))
            item['revision'] = revision
            self._touch_manifest()

    def ensure_layout(self):
        if not self.exists:
            if self.act('create %s' % self.path):
                os.makedirs(self.path, exist_ok=True)
            self.exists = True
        for name in list(self.layout_missing):
            target = os.path.join(self.path, name)
            if os.path.lexists(target):
                raise ReleaseError('%s exists and is not a directory' % target)
            if self.act('create %s/' % name):
                os.mkdir(target)
            self.layout_missing.remove(name)

    def require_path(self):
        if not self.exists:
            raise ReleaseError('path %s does not exist; create a release with state=present first' % self.path)

    def require_release(self, name):
        if name not in self.on_disk:
            raise ReleaseError('release %s does not exist under %s; create it with state=present first'
                               % (name, self.releases_dir))

    def choose_name(self, base, settings):
        """The release that holds BASE's code with SETTINGS (a digest of what a deploy puts into a
        release besides its code): BASE itself or BASE-2, BASE-3, ... whichever recorded SETTINGS,
        else the first of them nobody uses yet. A release is never given other settings, so the
        live release's files stay as they are whatever a deploy of its code with other settings
        does (a release recorded without settings is taken as holding other ones)."""
        check_release_name(base)
        pattern = re.compile(r'^%s(?:-([2-9]|[1-9][0-9]+))?$' % re.escape(base))
        taken = set(item['name'] for item in self.manifest['releases']) | self.on_disk
        if self.live:
            taken.add(self.live)
        numbers = [int(match.group(1) or 1) for match in map(pattern.match, taken) if match]
        first_free = None
        for number in range(1, max(numbers + [0]) + 2):
            name = base if number == 1 else '%s-%d' % (base, number)
            item = self.entry(name)
            if item is not None and item.get('settings') == settings and name in self.on_disk:
                return name
            if first_free is None and name not in taken:
                first_free = name
        return check_release_name(first_free)

    def present(self, name, revision=None, settings=None):
        """Create releases/NAME marked unfinished; re-prepare a failed or abandoned one. With
        SETTINGS, NAME is the base the release's name is chosen from (choose_name)."""
        check_release_name(name)
        if settings is not None:
            name = self.choose_name(name, settings)
        self.ensure_layout()
        release_dir = os.path.join(self.releases_dir, name)
        if name not in self.on_disk:
            if os.path.lexists(release_dir):
                raise ReleaseError('%s exists and is not a directory' % release_dir)
            if self.act('create release %s (unfinished)' % name):
                os.mkdir(release_dir)
            self.on_disk.add(name)
        item = self.entry(name)
        if item is None:
            state = GOOD if name == self.live else UNFINISHED
            item = self._new_entry(name, state)
            self.act('record release %s as %s' % (name, state))
            if settings is not None:
                item['settings'] = settings
        elif item.get('state') in BAD_STATES:
            self._set_state(name, UNFINISHED, 'mark release %s unfinished again (it was %s)'
                            % (name, item.get('state')))
        self._record_revision(item, revision)
        return name

    def fail(self, name):
        """Mark NAME failed; `current` is not touched."""
        check_release_name(name)
        self.require_path()
        if name not in self.on_disk and self.entry(name) is None:
            raise ReleaseError('release %s does not exist under %s; nothing to mark failed'
                               % (name, self.releases_dir))
        if name == self.live:
            raise ReleaseError('release %s is live (%s points to it); roll back (state=rollback) '
                               'instead of marking the live release failed' % (name, self.current_path))
        if self.state_of(name) != FAILED:
            item = self._set_state(name, FAILED, 'mark release %s failed' % name)
            item['failed'] = utcnow()
        return name

    def link_shared(self, name, shared_paths):
        """Link shared/P into releases/NAME/P for each P; missing shared paths become directories."""
        release_dir = os.path.join(self.releases_dir, name)
        if shared_paths and SHARED in self.layout_missing:
            self.ensure_layout()
        for rel in shared_paths:
            source = os.path.join(self.shared_dir, rel)
            dest = os.path.join(release_dir, rel)
            if not os.path.lexists(source):
                if self.act('create shared/%s/' % rel):
                    os.makedirs(source)
            link = os.path.relpath(source, os.path.dirname(dest))
            if os.path.islink(dest) and os.readlink(dest) == link:
                continue
            if os.path.islink(dest) or os.path.lexists(dest):
                text = 'replace releases/%s/%s with a link to shared/%s' % (name, rel, rel)
            else:
                text = 'link releases/%s/%s to shared/%s' % (name, rel, rel)
            self.linked.append(rel)
            if not self.act(text):
                continue
            parent = self._release_subdir(name, os.path.dirname(rel))
            if os.path.isdir(dest) and not os.path.islink(dest):
                shutil.rmtree(dest)
            tmp = self._temp_name(parent, '.link-')
            os.symlink(link, tmp)
            os.rename(tmp, dest)

    def _release_subdir(self, name, rel_dir):
        """Create releases/NAME/REL_DIR one real directory at a time: a link on the way
        would put the shared link somewhere outside the release."""
        current = os.path.join(self.releases_dir, name)
        for part in [p for p in rel_dir.split('/') if p]:
            current = os.path.join(current, part)
            if os.path.islink(current) or (os.path.lexists(current) and not os.path.isdir(current)):
                raise ReleaseError('%s is not a real directory; cannot link a shared path inside it'
                                   % current)
            if not os.path.lexists(current):
                os.mkdir(current)
        return current

    @staticmethod
    def _temp_name(directory, prefix):
        # A free name for a link that rename(2) then moves into place.
        return os.path.join(directory, '%s%d-%s' % (prefix, os.getpid(), os.urandom(6).hex()))

    def _point_current(self, name):
        """Point current at releases/NAME by renaming a new link over it: never a moment
        without current."""
        target = os.path.join(RELEASES, name)
        text = 'point current at %s (was %s)' % (target, self.current_target if self.current_target else 'absent')
        if self.act(text):
            tmp = self._temp_name(self.path, '.current-')
            os.symlink(target, tmp)
            try:
                os.rename(tmp, self.current_path)
            except OSError:
                os.unlink(tmp)
                raise
            fsync_dir(self.path)
        self.switched_from = self.live
        self.current_target = target
        self.live = name

    def _went_live(self, name, previous, action, revision=None):
        item = self.entry(name) or self._new_entry(name, GOOD)
        seq = self._next_seq()
        now = utcnow()
        item.update({'state': GOOD, 'switched': now, 'live_seq': seq, 'previous': previous})
        self._record_revision(item, revision)
        history = self.manifest.setdefault('history', [])
        history.append({'seq': seq, 'time': now, 'action': action, 'release': name,
                        'previous': previous, 'revision': item.get('revision')})
        del history[:-HISTORY_LENGTH]
        self._touch_manifest()

    def switch(self, name, shared_paths=(), revision=None):
        """Make NAME live: shared links, atomic switch of current, marker cleared, manifest."""
        check_release_name(name)
        if self.check_mode and name not in self.on_disk and (self.entry(name) or {}).get('state') not in BAD_STATES:
            # In check mode the task that creates the release did not run; report the switch
            # it would lead to instead of failing the whole check run.
            self.warnings.append('release %s does not exist yet; check mode assumes an earlier task '
                                 'creates it' % name)
            self.linked.extend(shared_paths)
            self._point_current(name)
            self.act('record release %s as live (previous: %s)' % (name, self.switched_from or 'none'))
            return name
        self.require_path()
        self.require_release(name)
        state = self.state_of(name)
        if state in BAD_STATES and name != self.live:
            raise ReleaseError('refusing to switch to release %s: it is marked %s. Prepare it again '
                               'with state=present (which clears the mark) or choose another release'
                               % (name, state))
        self.link_shared(name, shared_paths)
        if name == self.live:
            item = self.entry(name)
            if item is None or item.get('state') != GOOD:
                self._set_state(name, GOOD, 'record live release %s as good' % name)
            self._record_revision(self.entry(name), revision)
            return name
        previous = self.live
        self._point_current(name)
        if state == UNFINISHED:
            self.act('clear the unfinished mark of release %s' % name)
        self.act('record release %s as live (previous: %s)' % (name, previous or 'none'))
        self._went_live(name, previous, 'switch', revision)
        return name

    def rollback(self, name=None, shared_paths=()):
        """Point current back at NAME or the previous good release; the release that was live
        is marked abandoned, so no later rollback picks it."""
        self.require_path()
        if self.live is None:
            raise ReleaseError('nothing is live: %s is %s; there is nothing to roll back from'
                               % (self.current_path, 'missing' if self.current_target is None
                                  else 'pointing outside releases/ (%s)' % self.current_target))
        if name is None:
            name = self.previous_good()
            if name is None:
                raise ReleaseError('no previous good release to roll back to from %s: releases are %s'
                                   % (self.live, ', '.join('%s (%s)' % (n, self.state_of(n))
                                                           for n in self.names()) or 'none'))
        else:
            check_release_name(name)
            if name == self.live:
                self.link_shared(name, shared_paths)
                return name
            self.require_release(name)
            state = self.state_of(name)
            if state != GOOD:
                raise ReleaseError('refusing to roll back to release %s: it is %s, and a rollback only '
                                   'goes to a release that was live and is not marked failed or abandoned'
                                   % (name, state))
        self.link_shared(name, shared_paths)
        abandoned = self.live
        self._point_current(name)
        item = self._set_state(abandoned, ABANDONED, 'mark release %s abandoned' % abandoned)
        item['abandoned'] = utcnow()
        self.act('record release %s as live (rolled back from %s)' % (name, abandoned))
        self._went_live(name, abandoned, 'rollback')
        return name

    def clean(self, keep=5, protect=None):
        """Keep the KEEP good releases that were live most recently; remove the rest, and every
        unfinished, failed or abandoned release. Never removes the live release, the one a
        rollback would go to, or PROTECT. Directories the manifest does not know are left."""
        check_keep(keep)
        if not self.exists:
            return []
        rollback_to = self.previous_good()
        kept = set(name for name in (self.live, rollback_to, protect) if name)
        good = [item for item in self.manifest['releases']
                if item.get('state') == GOOD and item['name'] in self.on_disk]
        good.sort(key=lambda item: item.get('live_seq', 0), reverse=True)
        kept.update(item['name'] for item in good[:keep])
        for item in list(self.manifest['releases']):
            name = item['name']
            if name in kept:
                continue
            if name in self.on_disk:
                text = 'remove release %s (%s)' % (name, item.get('state'))
            else:
                text = 'forget release %s (%s, its directory is gone)' % (name, item.get('state'))
            self.removed.append(name)
            if self.act(text) and name in self.on_disk:
                self._remove_dir(name)
            self.on_disk.discard(name)
            self.manifest['releases'].remove(item)
            self._touch_manifest()
        return self.removed

    def _remove_dir(self, name):
        # Rename out of the way first: a half-removed release is never seen under its name.
        source = os.path.join(self.releases_dir, name)
        doomed = self._temp_name(self.releases_dir, '.removing-')
        os.rename(source, doomed)
        shutil.rmtree(doomed)

    def save(self):
        """Write the manifest atomically (temp file, fsync, rename) unless in check mode."""
        if not self.manifest_dirty or self.check_mode:
            return
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % MANIFEST, dir=self.path)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                json.dump(self.manifest, handle, indent=2, sort_keys=True)
                handle.write('\n')
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.manifest_path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(self.path)
        self.manifest_dirty = False

    def result(self, release=None):
        after = self.snapshot()
        data = {
            'changed': bool(self.actions),
            'path': self.path,
            'current_path': self.current_path,
            'current_target': self.current_target,
            'releases_path': self.releases_dir,
            'shared_path': self.shared_dir,
            'manifest_path': self.manifest_path,
            'release': release,
            'release_path': os.path.join(self.releases_dir, release) if release else None,
            'live': self.live,
            'previous': self.previous_good(),
            'switched_from': self.switched_from,
            'removed': list(self.removed),
            'linked': list(self.linked),
            'actions': list(self.actions),
            'warnings': list(self.warnings),
            'releases': self.release_list(),
            'diff': {'before': self.before, 'after': after},
        }
        return data


def run(path, state, release=None, revision=None, shared_paths=None, keep=5, lock_timeout=60,
        check_mode=False, holder=None, settings=None):
    """Do one operation under the deploy lock and return the result dict (see the module's
    RETURN). Raises ReleaseError with a message that names what to fix."""
    if release is not None:
        check_release_name(release)
    shared_paths = check_shared_paths(shared_paths)
    check_keep(keep)
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or lock_timeout < 0:
        raise ReleaseError('lock_timeout must be a number of seconds, 0 or more: got %r' % (lock_timeout,))
    if state in ('present', 'switch', 'fail') and not release:
        raise ReleaseError('state=%s needs release' % state)
    path = os.path.abspath(path)
    read_only = check_mode or state == 'query'
    created = None
    if not read_only and state == 'present' and not os.path.isdir(path):
        os.makedirs(path)
        created = 'create %s' % path
    create_lock = not read_only and os.path.isdir(path)
    lock = DeployLock(path, lock_timeout, create=create_lock,
                      holder=holder or default_holder(state, release))
    if not os.path.isdir(path):
        lock = None
    if lock:
        lock.acquire()
    try:
        model = Releases(path, check_mode=check_mode)
        if created:
            model.actions.append(created)
        if state == 'present':
            release = model.present(release, revision, settings)
            model.link_shared(release, shared_paths)
        elif state == 'switch':
            model.switch(release, shared_paths, revision)
        elif state == 'fail':
            model.fail(release)
        elif state == 'rollback':
            release = model.rollback(release, shared_paths)
        elif state == 'clean':
            model.clean(keep, protect=release)
        elif state != 'query':
            raise ReleaseError('unknown state %r' % state)
        model.save()
        return model.result(release)
    finally:
        if lock:
            lock.release()
