# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verified PostgreSQL dumps, their retention, and restores that swap a database in.

Standard library only: the modules weblab.stack.postgresql_dump and postgresql_restore wrap it,
and the backups role copies it to the host and runs it as a plain script from a systemd timer::

    python3 pg_backup.py dump --dir DIR --database DB [--format custom|directory|plain]
        [--jobs N] [--compress SPEC] [--label L] [--globals] [--keep N] [--max-age-days D]
        [--status-file FILE] [--host H] [--port P] [--user U]

(the password, if any, comes from PGPASSWORD or ~/.pgpass, never from the command line).

Every program runs through a *runner*: a function taking an argv list and a dict of extra
environment variables and returning (rc, stdout, stderr). The modules pass one built on
``module.run_command``, the script one built on ``subprocess``. No shell is ever involved.

In the backup directory DIR, for database DB::

    DB-20250101T020000Z[-LABEL].dump       custom format (.dir: directory format, .sql: plain)
    DB-20250101T020000Z[-LABEL].dump.sha256  sha256sum format (a directory: one line per file)
    DB-20250101T020000Z[-LABEL].dump.json    metadata, "verified": true once checked
    DB-20250101T020000Z[-LABEL].globals.sql  optional pg_dumpall --globals-only
    .DB-20250101T020000Z[-LABEL].dump.partial  while pg_dump writes it

The time in the name (UTC) is the dump's time: file times are never used, so copies keep it.
A dump is *verified* when its metadata says so and its checksum file exists. Its metadata also
holds each table's row count, taken in the snapshot pg_dump dumps (row_counts), and the result
of its last test restore (restore_test): a dump that failed one is no longer verified.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

FORMATS = {'custom': 'dump', 'directory': 'dir', 'plain': 'sql'}
FORMAT_OF_EXTENSION = dict((ext, fmt) for fmt, ext in FORMATS.items())
TIME_FORMAT = '%Y%m%dT%H%M%SZ'
# For the names of the temporary and the replaced database: lower case, so they need no quotes.
DATABASE_TIME_FORMAT = '%Y%m%d_%H%M%S'
GLOBALS_SUFFIX = '.globals.sql'
PARTIAL_SUFFIX = '.partial'
CHECKSUM_SUFFIX = '.sha256'
METADATA_SUFFIX = '.json'
MAX_IDENTIFIER_BYTES = 63
MAINTENANCE_DB = 'postgres'
LABEL_PATTERN = r'[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}'
NAME_RE = re.compile(r'^(?P<time>\d{8}T\d{6}Z)(?:-(?P<label>%s))?\.(?P<ext>dump|dir|sql)$' % LABEL_PATTERN)
LABEL_RE = re.compile(r'^%s$' % LABEL_PATTERN)
COMPRESS_RE = re.compile(r'^(?:(?P<method>gzip|lz4|zstd|none)(?::(?P<level>\d+))?|(?P<bare>\d+))$')
COMPRESS_LEVELS = {'gzip': (1, 9), 'lz4': (1, 12), 'zstd': (1, 22)}
PLAIN_HEADER = b'--\n-- PostgreSQL database dump\n'
PLAIN_FOOTER = b'-- PostgreSQL database dump complete'
TOC_HEADER = '; Archive created at'
TOC_ENTRIES = '; Selected TOC Entries:'
CHUNK = 1024 * 1024
# Every table's row count ({"schema"."table": rows}, names quoted as SQL quotes them), in the
# current transaction's snapshot: ordinary tables and populated materialized views, not the
# system's, temporary ones or an extension's own (pg_dump dumps none of those).
ROW_COUNTS_SQL = (
    "SELECT json_object_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), "
    "false, true, '')))[1]::text::bigint) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND c.relpersistence <> 't' "
    "AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
    "AND d.deptype = 'e')")
DUMP_EXIT_RE = re.compile(r'^weblab-pg_dump-exit=(\d+)$', re.M)


class BackupError(Exception):
    """The operation cannot be done; the message says why and what to do."""


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso(when):
    return when.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


# ---- validation ------------------------------------------------------------------------------

def check_database(name, parameter='database'):
    if not isinstance(name, str) or name == '':
        raise BackupError('%s must be a non-empty database name' % parameter)
    if '/' in name or name.startswith('.') or any(ord(char) < 32 for char in name):
        raise BackupError('%s=%r cannot name dump files: no "/", no control characters, and no '
                          'leading "."' % (parameter, name))
    if len(name.encode('utf-8')) > MAX_IDENTIFIER_BYTES:
        raise BackupError('%s=%r is longer than PostgreSQL\'s %d bytes'
                          % (parameter, name, MAX_IDENTIFIER_BYTES))
    return name


def check_label(label, parameter='label'):
    if label is None or label == '':
        return None
    if not isinstance(label, str) or not LABEL_RE.match(label) or label.endswith('.globals'):
        raise BackupError('%s=%r: a label is 1-100 letters, digits, ".", "_", "+" or "-", starting '
                          'with a letter or digit (and not ending in ".globals")' % (parameter, label))
    return label


def check_positive(value, parameter, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BackupError('%s must be an integer of at least 1: got %r' % (parameter, value))
    return value


def check_format(fmt):
    if fmt not in FORMATS:
        raise BackupError('format must be one of %s: got %r' % (', '.join(sorted(FORMATS)), fmt))
    return fmt


# ---- naming ----------------------------------------------------------------------------------

def dump_name(database, when, label=None, fmt='custom'):
    """The file name of a dump of DATABASE taken at WHEN (a datetime)."""
    stem = '%s-%s' % (database, when.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT))
    if label:
        stem += '-' + label
    return '%s.%s' % (stem, FORMATS[fmt])


def parse_dump_name(name, database):
    """Return {name, database, time, label, format} when NAME is a dump of DATABASE, else None.

    The database is given because names and labels may hold "-": the name must start with
    DATABASE followed by "-" and a time, so the dumps of ``app-2`` are never those of ``app``.
    """
    prefix = database + '-'
    if not name.startswith(prefix) or name.endswith(GLOBALS_SUFFIX):
        return None
    match = NAME_RE.match(name[len(prefix):])
    if not match:
        return None
    try:
        when = datetime.datetime.strptime(match.group('time'), TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return {'name': name, 'database': database, 'time': when, 'label': match.group('label'),
            'format': FORMAT_OF_EXTENSION[match.group('ext')]}


def format_of(name):
    """The dump format, from the extension of NAME, or None."""
    if name.endswith(GLOBALS_SUFFIX):
        return None
    return FORMAT_OF_EXTENSION.get(name.rsplit('.', 1)[-1]) if '.' in name else None


def stem_of(name):
    return name.rsplit('.', 1)[0]


def partial_name(name):
    return '.%s%s' % (name, PARTIAL_SUFFIX)


def companions(directory, name):
    """The paths that belong to the dump NAME in DIRECTORY."""
    path = os.path.join(directory, name)
    return {
        'path': path,
        'sha256': path + CHECKSUM_SUFFIX,
        'json': path + METADATA_SUFFIX,
        'globals': os.path.join(directory, stem_of(name) + GLOBALS_SUFFIX),
        'partial': os.path.join(directory, partial_name(name)),
    }


def database_names(database, when, kinds=('restore', 'replaced')):
    """The temporary and the replaced database names of a restore of DATABASE at WHEN (KINDS
    ('test',): the scratch database of a test restore)."""
    stamp = when.astimezone(datetime.timezone.utc).strftime(DATABASE_TIME_FORMAT)
    names = tuple('%s_%s_%s' % (database, kind, stamp) for kind in kinds)
    for item in names:
        if len(item.encode('utf-8')) > MAX_IDENTIFIER_BYTES:
            raise BackupError('database name %r is too long to restore safely: %s would be longer '
                              'than PostgreSQL\'s %d bytes' % (database, item, MAX_IDENTIFIER_BYTES))
    return names


# ---- SQL quoting and argv --------------------------------------------------------------------

def quote_ident(value):
    return '"%s"' % value.replace('"', '""')


def quote_literal(value):
    if '\\' in value:
        return "E'%s'" % value.replace('\\', '\\\\').replace("'", "''")
    return "'%s'" % value.replace("'", "''")


# Settings whose value is a list of quoted elements (PostgreSQL's GUC_LIST_QUOTE): pg_dump
# gives each element its own literal, and so do we.
LIST_QUOTE_SETTINGS = frozenset(('local_preload_libraries', 'search_path', 'session_preload_libraries',
                                 'shared_preload_libraries', 'temp_tablespaces', 'unix_socket_directories'))
LOCALE_PROVIDERS = {'c': 'libc', 'i': 'icu', 'b': 'builtin'}


def split_setting_list(text):
    """The elements of a list setting as PostgreSQL stores it (``"$user", public``)."""
    items, index, size = [], 0, len(text)
    while True:
        while index < size and text[index].isspace():
            index += 1
        if index >= size:
            return items
        if text[index] == '"':
            index += 1
            item = []
            while True:
                end = text.find('"', index)
                if end < 0:
                    raise BackupError('cannot read the list setting %r: a quote is not closed' % text)
                item.append(text[index:end])
                if text[end + 1:end + 2] == '"':
                    item.append('"')
                    index = end + 2
                    continue
                index = end + 1
                break
            items.append(''.join(item))
        else:
            end = index
            while end < size and text[end] != ',' and not text[end].isspace():
                end += 1
            items.append(text[index:end])
            index = end
        while index < size and text[index].isspace():
            index += 1
        if index < size:
            if text[index] != ',':
                raise BackupError('cannot read the list setting %r at %r' % (text, text[index:]))
            index += 1


def setting_sql(entry):
    """``name TO value`` for a stored setting NAME=VALUE, quoted as pg_dump quotes it."""
    name, dummy, value = entry.partition('=')
    if not re.match(r'^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$', name):
        raise BackupError('cannot carry over the setting %r: its name is not a plain identifier' % entry)
    if name.lower() in LIST_QUOTE_SETTINGS:
        items = split_setting_list(value)
        return '%s TO %s' % (name, ', '.join(quote_literal(item) for item in items) if items else "''")
    return '%s TO %s' % (name, quote_literal(value))


def database_properties(target):
    """What a database carries beyond its contents, from databases_info's TARGET: locale provider
    and its locale, ICU rules, connection limit, comment and settings (role None: the database's
    own ALTER DATABASE settings)."""
    catalog = target.get('catalog') or {}
    provider = LOCALE_PROVIDERS.get(catalog.get('datlocprovider'))
    limit = catalog.get('datconnlimit')
    return {
        'provider': provider,
        'locale': catalog.get('datlocale', catalog.get('daticulocale')) if provider in ('icu', 'builtin') else None,
        'icu_rules': catalog.get('daticurules') if provider == 'icu' else None,
        'connection_limit': limit if limit is not None and limit != -1 else None,
        'comment': target.get('comment'),
        'settings': [(item['role'], entry) for item in target.get('settings') or [] for entry in item['config'] or []],
    }


def create_database_sql(name, target):
    """CREATE DATABASE NAME from template0 with TARGET's owner, encoding, collation, ctype and
    locale provider (with its ICU or builtin locale and ICU rules); TARGET None: the defaults."""
    create = 'CREATE DATABASE %s TEMPLATE template0' % quote_ident(name)
    if not target:
        return create
    create += ' OWNER %s ENCODING %s LC_COLLATE %s LC_CTYPE %s' % (
        quote_ident(target['owner']), quote_literal(target['encoding']),
        quote_literal(target['collate']), quote_literal(target['ctype']))
    properties = database_properties(target)
    if properties['provider']:
        create += ' LOCALE_PROVIDER %s' % properties['provider']
    if properties['provider'] == 'icu' and properties['locale']:
        create += ' ICU_LOCALE %s' % quote_literal(properties['locale'])
    if properties['icu_rules']:
        create += ' ICU_RULES %s' % quote_literal(properties['icu_rules'])
    if properties['provider'] == 'builtin' and properties['locale']:
        create += ' BUILTIN_LOCALE %s' % quote_literal(properties['locale'])
    return create


def database_property_sql(name, target):
    """The statements that give database NAME TARGET's connection limit, settings and comment:
    run after the restore (a setting such as default_transaction_read_only, or a low connection
    limit, would stop it), before the swap."""
    properties = database_properties(target)
    ident = quote_ident(name)
    statements = []
    if properties['connection_limit'] is not None:
        statements.append('ALTER DATABASE %s CONNECTION LIMIT %d' % (ident, int(properties['connection_limit'])))
    for role, entry in properties['settings']:
        if role is None:
            statements.append('ALTER DATABASE %s SET %s' % (ident, setting_sql(entry)))
        else:
            statements.append('ALTER ROLE %s IN DATABASE %s SET %s' % (quote_ident(role), ident, setting_sql(entry)))
    if properties['comment'] is not None:
        statements.append('COMMENT ON DATABASE %s IS %s' % (ident, quote_literal(properties['comment'])))
    return statements


def describe_properties(target):
    """What of TARGET a restore carries over, for its actions."""
    properties = database_properties(target)
    parts = ['owner %s' % target['owner'], 'encoding %s' % target['encoding'],
             'collation %s' % target['collate']]
    if properties['provider']:
        parts.append('locale provider %s%s' % (properties['provider'],
                                               ' (%s)' % properties['locale'] if properties['locale'] else ''))
    if properties['connection_limit'] is not None:
        parts.append('connection limit %s' % properties['connection_limit'])
    if properties['settings']:
        parts.append('%d setting(s)' % len(properties['settings']))
    if properties['comment'] is not None:
        parts.append('its comment')
    if target.get('has_acl'):
        parts.append('its privileges')
    return ', '.join(parts)


def conninfo(database):
    """A libpq connection string naming DATABASE: safe whatever the name holds ("=", spaces)."""
    return "dbname='%s'" % database.replace('\\', '\\\\').replace("'", "\\'")


def display(argv):
    return ' '.join(shlex.quote(str(arg)) for arg in argv)


def compress_args(spec, pg_dump_major, fmt='custom'):
    """pg_dump arguments for the compression SPEC ("gzip:1", "zstd:3", "lz4", "6", "0", "none").

    zstd and lz4 need pg_dump 16 or later; a compressed plain dump is refused, since psql
    cannot restore it.
    """
    if spec is None or str(spec).strip() == '':
        return []
    text = str(spec).strip().lower()
    match = COMPRESS_RE.match(text)
    if not match:
        raise BackupError('compress=%r: use METHOD or METHOD:LEVEL with METHOD gzip, lz4 or zstd, '
                          'a gzip level 0-9, or 0 (or none) for no compression' % (spec,))
    if match.group('bare') is not None:
        level = int(match.group('bare'))
        method = 'gzip' if level > 0 else 'none'
        if level > 9:
            raise BackupError('compress=%r: a bare number is a gzip level, 0-9' % (spec,))
    else:
        method = match.group('method')
        level = int(match.group('level')) if match.group('level') is not None else None
        if method == 'none' and level:
            raise BackupError('compress=%r: "none" takes no level' % (spec,))
        if method == 'gzip' and level == 0:
            method, level = 'none', None
    if method == 'none':
        return ['--compress=0'] if pg_dump_major < 16 else ['--compress=none']
    if fmt == 'plain':
        raise BackupError('compress=%s with format=plain would write a compressed SQL file that psql '
                          'cannot restore: use format custom or directory, or compress=0' % spec)
    if level is not None:
        low, high = COMPRESS_LEVELS[method]
        if not low <= level <= high:
            raise BackupError('compress=%r: %s levels are %d-%d' % (spec, method, low, high))
    if method != 'gzip' and pg_dump_major < 16:
        raise BackupError('compress=%s needs pg_dump 16 or later, and this host has pg_dump %d: use '
                          'gzip:LEVEL (1 is fast) or 0 for none' % (spec, pg_dump_major))
    if pg_dump_major < 16:
        return ['--compress=%d' % (6 if level is None else level)]
    return ['--compress=%s' % (method if level is None else '%s:%d' % (method, level))]


def pg_dump_argv(pg_dump, database, target, fmt='custom', jobs=1, compress=(), connection=()):
    argv = [pg_dump, '--format=%s' % fmt, '--file=%s' % target]
    if fmt == 'directory' and jobs and jobs > 1:
        argv.append('--jobs=%d' % jobs)
    return argv + list(compress) + list(connection) + ['--dbname=%s' % conninfo(database)]


def pg_dumpall_globals_argv(pg_dumpall, target, connection=()):
    return ([pg_dumpall, '--globals-only', '--file=%s' % target] + list(connection)
            + ['--dbname=%s' % conninfo(MAINTENANCE_DB)])


def pg_restore_list_argv(pg_restore, path):
    return [pg_restore, '--list', path]


def pg_restore_argv(pg_restore, path, database, jobs=1, connection=()):
    argv = [pg_restore, '--exit-on-error']
    if jobs and jobs > 1:
        argv.append('--jobs=%d' % jobs)
    return argv + list(connection) + ['--dbname=%s' % conninfo(database), path]


def psql_restore_argv(psql, path, database, connection=()):
    return ([psql, '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--single-transaction']
            + list(connection) + ['--dbname=%s' % conninfo(database), '--file=%s' % path])


def psql_argv(psql, database, statements, connection=()):
    """psql running each statement as its own -c (each its own transaction, in order)."""
    argv = [psql, '--no-psqlrc', '--quiet', '--no-align', '--tuples-only', '--set=ON_ERROR_STOP=1']
    argv += list(connection) + ['--dbname=%s' % conninfo(database)]
    for statement in statements:
        argv += ['--command', statement]
    return argv


def psql_quote(value):
    """VALUE as a single-quoted argument of a psql meta-command (\\o 'FILE')."""
    return "'%s'" % value.replace('\\', '\\\\').replace("'", "''")


def snapshot_dump_script(dump_argv, counts_path):
    """A psql script that counts every table's rows into COUNTS_PATH and runs pg_dump
    (DUMP_ARGV) in the same snapshot (--snapshot of the one this session exports and holds until
    pg_dump ends), then prints pg_dump's exit status: the counts are those of the dump."""
    return '\n'.join([
        'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;',
        'SELECT pg_export_snapshot() AS weblab_snapshot \\gset',
        '\\setenv WEBLAB_SNAPSHOT :weblab_snapshot',
        '\\o %s' % psql_quote(counts_path),
        ROW_COUNTS_SQL + ';',
        '\\o',
        '\\! %s --snapshot="$WEBLAB_SNAPSHOT"; echo "weblab-pg_dump-exit=$?"' % display(dump_argv),
        'COMMIT;', ''])


def psql_script_argv(psql, database, script, connection=()):
    return ([psql, '--no-psqlrc', '--quiet', '--no-align', '--tuples-only', '--set=ON_ERROR_STOP=1']
            + list(connection) + ['--dbname=%s' % conninfo(database), '--file=%s' % script])


def parse_version(text):
    """(major, minor) from `pg_dump --version` or a server_version, e.g. (15, 13)."""
    match = re.search(r'(\d+)(?:\.(\d+))?', text or '')
    if not match:
        raise BackupError('cannot read a PostgreSQL version from %r' % (text,))
    return int(match.group(1)), int(match.group(2) or 0)


def find_program(name, bin_dir=None):
    """NAME from BIN_DIR, else PATH (Debian's wrapper picks the version), else the newest
    /usr/lib/postgresql/*/bin."""
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if os.access(path, os.X_OK):
            return path
        raise BackupError('%s is not an executable program' % path)
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob('/usr/lib/postgresql/*/bin/%s' % name)
    candidates.sort(key=lambda path: [int(part) if part.isdigit() else 0
                                      for part in path.split('/')[4].split('.')])
    if candidates:
        return candidates[-1]
    raise BackupError('%s was found neither on PATH nor in /usr/lib/postgresql/*/bin: install the '
                      'PostgreSQL client (Debian package postgresql-client)' % name)


def tail(text, lines=15):
    text = (text or '').strip()
    return '\n'.join(text.splitlines()[-lines:]) or '(no output)'


def subprocess_runner(argv, env=None):
    """The runner of the command-line script: no shell, the environment plus ENV."""
    full = dict(os.environ)
    full.update(env or {})
    done = subprocess.run(argv, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return done.returncode, done.stdout.decode('utf-8', 'replace'), done.stderr.decode('utf-8', 'replace')


def login_argument_spec():
    """The login options of the modules (documented in the weblab.stack.postgresql_login fragment)."""
    return dict(
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
    )


def module_postgres(module):
    """A Postgres for an AnsibleModule: its login options, programs run by module.run_command."""
    def runner(argv, env):
        # No expansion of "~" or "$VAR": a database or file name is passed as it is.
        return module.run_command(argv, environ_update=env, check_rc=False, expand_user_and_vars=False)

    params = module.params
    return Postgres(runner, host=params['login_host'], port=params['login_port'], user=params['login_user'],
                    password=params['login_password'])


def exit_module(module, pg, work, subject):
    """Run WORK() (dump or restore) for an AnsibleModule and exit with its result: warnings
    passed on, the diff headed by SUBJECT(result), errors as a failure listing the commands run."""
    try:
        result = work()
    except BackupError as exc:
        module.fail_json(msg=str(exc), commands=pg.commands)
    except OSError as exc:
        module.fail_json(msg='%s: %s' % (exc.__class__.__name__, exc), commands=pg.commands)
    for warning in result.pop('warnings'):
        module.warn(warning)
    diff = result.pop('diff')
    if module._diff:
        title = subject(result)
        result['diff'] = dict(diff, before_header='%s (before)' % title, after_header='%s (after)' % title)
    module.exit_json(**result)


class Postgres:
    """How to reach the server, and every program run against it (recorded in ``commands``).

    Without HOST, libpq connects through the local socket as the user running this code. The
    password goes only into the environment of each program (PGPASSWORD).
    """

    def __init__(self, runner, host=None, port=None, user=None, password=None, bin_dir=None):
        self.runner = runner
        self.host = host or None
        self.port = port
        self.user = user or None
        self.password = password or None
        self.bin_dir = bin_dir
        self.commands = []
        self._programs = {}

    def connection_args(self):
        args = []
        if self.host:
            args.append('--host=%s' % self.host)
        if self.port:
            args.append('--port=%s' % int(self.port))
        if self.user:
            args.append('--username=%s' % self.user)
        # Never prompt: a missing password is an error, not a hang.
        args.append('--no-password')
        return args

    def env(self):
        return {'PGPASSWORD': self.password} if self.password else {}

    def program(self, name):
        if name not in self._programs:
            self._programs[name] = find_program(name, self.bin_dir)
        return self._programs[name]

    def run(self, argv):
        self.commands.append(display(argv))
        rc, out, err = self.runner(list(argv), self.env())
        return rc, out or '', err or ''

    def run_ok(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise BackupError('%s failed (rc=%s): %s' % (what, rc, tail(err or out)))
        return out

    def version(self, name):
        """(major, minor) of program NAME (`NAME --version`)."""
        return parse_version(self.run_ok([self.program(name), '--version'], '%s --version' % name))

    def query(self, sql, database=MAINTENANCE_DB):
        """The single JSON value SQL returns (None for no row)."""
        out = self.run_ok(psql_argv(self.program('psql'), database, [sql], self.connection_args()),
                          'the query %r on database %s' % (sql.split(' FROM ')[0][:60], database))
        text = out.strip()
        return json.loads(text) if text else None

    def execute(self, statements, what, database=MAINTENANCE_DB):
        return self.run_ok(psql_argv(self.program('psql'), database, statements, self.connection_args()), what)

    def dump_in_snapshot(self, dump_argv, database, work_dir):
        """Run pg_dump (DUMP_ARGV) in the snapshot of a psql session that counted every table's
        rows first (snapshot_dump_script); (rc, error output, {table: rows} or None). The
        script and the counts are files in WORK_DIR (the caller's umask), removed after."""
        fd, script = tempfile.mkstemp(prefix='.weblab-dump-', suffix='.sql', dir=work_dir)
        counts = script[:-len('.sql')] + '.counts'
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(snapshot_dump_script(dump_argv, counts))
            rc, out, err = self.run(psql_script_argv(self.program('psql'), database, script, self.connection_args()))
            # What that psql ran, in the record of programs run.
            self.commands.append(display(list(dump_argv) + ['--snapshot=$WEBLAB_SNAPSHOT']))
            exited = DUMP_EXIT_RE.search(out)
            if rc != 0 or exited is None:
                return rc or 1, err or out, None
            if int(exited.group(1)) != 0:
                return int(exited.group(1)), err, None
            with open(counts, 'r', encoding='utf-8') as handle:
                text = handle.read().strip()
            return 0, err, json.loads(text) if text else {}
        finally:
            remove_path(script)
            remove_path(counts)

    def row_counts(self, database):
        """{table: rows} of every table of DATABASE (ROW_COUNTS_SQL)."""
        return self.query(ROW_COUNTS_SQL, database) or {}

    def databases_info(self, name, others):
        """(NAME's owner, encoding, locale, connection flag, database grants, catalog row, comment
        and settings, or None; which of the OTHERS exist; the NAME_replaced_TIME databases that
        earlier restores left, oldest first), in one query."""
        found = self.query(
            "SELECT json_build_object('target', (SELECT json_build_object('name', d.datname, "
            "'owner', pg_get_userbyid(d.datdba), "
            "'encoding', pg_encoding_to_char(d.encoding), 'collate', d.datcollate, 'ctype', d.datctype, "
            "'allow_connections', d.datallowconn, 'has_acl', d.datacl IS NOT NULL, "
            "'grants', (SELECT coalesce(json_agg(json_build_object('privilege', a.privilege_type, "
            "'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
            "'grantable', a.is_grantable)), '[]'::json) FROM aclexplode(d.datacl) a WHERE a.grantee <> d.datdba), "
            # The whole catalog row (its columns differ between versions: the locale provider
            # from 15, ICU rules from 16, datlocale instead of daticulocale from 17), the
            # comment, and the ALTER DATABASE / ALTER ROLE ... IN DATABASE settings.
            "'catalog', to_jsonb(d) - 'datacl', 'comment', shobj_description(d.oid, 'pg_database'), "
            "'size', pg_database_size(d.oid), "
            # Where the restored copy goes; only for roles allowed to read it (superusers are).
            "'data_directory', CASE WHEN pg_has_role(current_user, 'pg_read_all_settings', 'MEMBER') "
            "THEN current_setting('data_directory') END, "
            "'settings', (SELECT coalesce(json_agg(json_build_object('role', CASE WHEN s.setrole = 0 THEN NULL "
            "ELSE pg_get_userbyid(s.setrole) END, 'config', s.setconfig) ORDER BY s.setrole), '[]'::json) "
            "FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)) "
            "FROM pg_database d WHERE d.datname = %s), "
            "'taken', (SELECT coalesce(json_agg(datname ORDER BY datname), '[]'::json) FROM pg_database "
            "WHERE datname IN (%s)), "
            "'replaced', (SELECT coalesce(json_agg(datname ORDER BY datname), '[]'::json) FROM pg_database "
            "WHERE left(datname, %d) = %s))"
            % (quote_literal(name), ', '.join(quote_literal(other) for other in others),
               len(name + '_replaced_'), quote_literal(name + '_replaced_')))
        prefix = re.compile(r'^%s_replaced_\d{8}_\d{6}$' % re.escape(name))
        return found['target'], found['taken'], [item for item in found.get('replaced') or [] if prefix.match(item)]


# ---- files -----------------------------------------------------------------------------------

def fsync_dir(path):
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


def write_atomic(path, text, mode=0o600):
    """Write TEXT to PATH through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def write_json(path, data, mode=0o600):
    """DATA as indented, sorted JSON at PATH (write_atomic): metadata and status files."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + '\n', mode)


def remove_path(path):
    """Remove a file or a directory tree; True when something was there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return True
    if os.path.lexists(path):
        os.unlink(path)
        return True
    return False


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def dump_files(path):
    """The files of a dump, as (path relative to the backup directory, absolute path), sorted."""
    name = os.path.basename(path)
    if not os.path.isdir(path):
        return [(name, path)]
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for item in files:
            full = os.path.join(root, item)
            found.append((os.path.join(name, os.path.relpath(full, path)), full))
    return sorted(found)


def dump_size(path):
    return sum(os.path.getsize(full) for dummy, full in dump_files(path))


def human(size):
    """SIZE bytes for a message: 1.5 GiB."""
    value = float(size)
    for unit in ('bytes', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            return ('%d %s' % (value, unit)) if unit == 'bytes' else ('%.1f %s' % (value, unit))
        value /= 1024.0


def free_space(path):
    """Bytes free for an unprivileged writer on the file system of PATH (or of its nearest
    existing parent)."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def check_space(what, needed, path, how, statvfs_free=free_space):
    """Refuse, with the figures, when NEEDED bytes (estimated HOW) do not fit on PATH's file system."""
    free = statvfs_free(path)
    if needed > free:
        raise BackupError('not enough free space for %s: about %s needed (%s), %s free on the file system of '
                          '%s. Nothing was changed; free some space, or set space_check to false if the '
                          'estimate is wrong' % (what, human(needed), how, human(free), path))
    return free


def checksum_lines(path):
    """sha256sum lines (relative to the backup directory) for the dump at PATH."""
    return ['%s  %s\n' % (file_sha256(full), relative) for relative, full in dump_files(path)]


def checksum_of_lines(lines):
    """The checksum of a dump: of its one file, or for a directory of its sorted checksum lines."""
    if len(lines) == 1 and '/' not in lines[0].split('  ', 1)[1]:
        return lines[0].split('  ', 1)[0]
    return hashlib.sha256(''.join(lines).encode('utf-8')).hexdigest()


def write_checksum(path):
    lines = checksum_lines(path)
    write_atomic(path + CHECKSUM_SUFFIX, ''.join(lines), 0o600)
    return checksum_of_lines(lines)


def read_checksum_file(path):
    """{relative name: sha256} from a sha256sum file."""
    entries = {}
    with open(path, 'r', encoding='utf-8') as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip('\n')
            match = re.match(r'^([0-9a-fA-F]{64}) [ *](.+)$', line)
            if not match:
                raise BackupError('%s line %d is not in sha256sum format' % (path, number))
            entries[match.group(2)] = match.group(1).lower()
    if not entries:
        raise BackupError('%s is empty' % path)
    return entries


def verify_checksum(path):
    """Compare the dump at PATH with its .sha256 file; return its checksum or raise BackupError
    naming what differs (a truncated or altered file, a missing or an extra file)."""
    sums = path + CHECKSUM_SUFFIX
    if not os.path.lexists(path):
        raise BackupError('the dump %s does not exist' % path)
    if not os.path.isfile(sums):
        raise BackupError('the dump %s has no checksum file %s, so it cannot be proven intact; '
                          'refusing it' % (path, os.path.basename(sums)))
    expected = read_checksum_file(sums)
    lines = checksum_lines(path)
    actual = dict((line.split('  ', 1)[1].rstrip('\n'), line.split('  ', 1)[0]) for line in lines)
    problems = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            problems.append('%s is missing' % name)
        elif name not in expected:
            problems.append('%s is not in the checksum file' % name)
        elif expected[name] != actual[name]:
            full = os.path.join(os.path.dirname(path), name)
            problems.append('%s has sha256 %s, the checksum file says %s (size now %d bytes)'
                            % (name, actual[name], expected[name], os.path.getsize(full)))
    if problems:
        raise BackupError('the dump %s is damaged (truncated or altered since it was verified): %s. '
                          'Nothing was changed; choose another dump'
                          % (path, '; '.join(problems)))
    return checksum_of_lines(lines)


def verify_plain(path):
    """A plain SQL dump is whole when it starts with pg_dump's header and ends with its footer."""
    with open(path, 'rb') as handle:
        head = handle.read(512)
        handle.seek(max(0, os.path.getsize(path) - 4096))
        end = handle.read()
    if not head.startswith(PLAIN_HEADER):
        raise BackupError('%s does not start like a pg_dump plain SQL dump' % path)
    if PLAIN_FOOTER not in end:
        raise BackupError('%s does not end with "%s": it is incomplete' % (path, PLAIN_FOOTER.decode()))
    return head.decode('utf-8', 'replace')


def verify_contents(pg, path, fmt):
    """Read the table of contents (custom, directory) or the plain dump's header and footer;
    returns the text read (the listing, or the plain dump's first lines)."""
    if fmt == 'plain':
        return verify_plain(path)
    rc, out, err = pg.run(pg_restore_list_argv(pg.program('pg_restore'), path))
    # A readable archive always lists its header; an empty database's dump has no entries
    # after "Selected TOC Entries", and that is still a whole dump.
    if rc != 0 or TOC_HEADER not in out or TOC_ENTRIES not in out:
        raise BackupError('the table of contents of %s cannot be read (pg_restore --list, rc=%s): %s. '
                          'The dump is damaged; nothing was changed' % (path, rc, tail(err or out, 5)))
    return out


def dump_versions(text):
    """(server version, pg_dump version) as a dump's header states them (pg_restore --list, or
    a plain dump's first lines): "Dumped from database version: 15.13 (Debian ...)"."""
    found = []
    for what in ('from database', 'by pg_dump'):
        match = re.search(r'Dumped %s version:? ([^\n]+)' % what, text)
        found.append(match.group(1).strip() if match else None)
    return tuple(found)


def read_metadata(path):
    """(metadata dict or None, problem or None) for the dump at PATH."""
    try:
        with open(path + METADATA_SUFFIX, 'r', encoding='utf-8') as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None, 'no metadata file'
    except (OSError, ValueError) as exc:
        return None, 'unreadable metadata: %s' % exc
    if not isinstance(data, dict):
        return None, 'metadata is not a JSON object'
    if data.get('file') != os.path.basename(path):
        return data, 'metadata names another file (%r)' % data.get('file')
    return data, None


def scan(directory, database):
    """Every dump of DATABASE in DIRECTORY (partial ones included), oldest first.

    Each entry: name, path, database, time, label, format, partial, verified, metadata, problem.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    entries = []
    for name in names:
        partial = name.startswith('.') and name.endswith(PARTIAL_SUFFIX)
        real_name = name[1:-len(PARTIAL_SUFFIX)] if partial else name
        parsed = parse_dump_name(real_name, database)
        if parsed is None:
            continue
        path = os.path.join(directory, name)
        entry = dict(parsed, name=name, path=path, partial=partial, verified=False, metadata=None,
                     problem='being written, or left by a dump that did not finish' if partial else None)
        if not partial:
            metadata, problem = read_metadata(path)
            entry['metadata'] = metadata
            if problem is None and metadata.get('verified') is not True:
                problem = 'metadata does not say verified'
            tested = metadata.get('restore_test') if isinstance(metadata, dict) else None
            if problem is None and isinstance(tested, dict) and tested.get('result') == 'failed':
                problem = 'failed its test restore at %s: %s' % (
                    tested.get('at'), '; '.join(tested.get('problems') or []) or 'no reason recorded')
            if problem is None and not os.path.isfile(path + CHECKSUM_SUFFIX):
                problem = 'no checksum file'
            entry['problem'] = problem
            entry['verified'] = problem is None
        entries.append(entry)
    entries.sort(key=lambda item: (item['time'], item['name']))
    return entries


def choose_latest(entries, label=None):
    """The newest verified dump (with LABEL, when given), or None. Partial, unverified and
    dumps with damaged metadata are skipped."""
    chosen = None
    for entry in entries:
        if entry['partial'] or not entry['verified']:
            continue
        if label is not None and entry['label'] != label:
            continue
        if chosen is None or (entry['time'], entry['name']) > (chosen['time'], chosen['name']):
            chosen = entry
    return chosen


def choose_removals(entries, keep=None, max_age_days=None, now=None, verify=None, remove_unverified=False,
                    reported=None):
    """The entries retention removes, oldest first, each with a ``reason``.

    A verified dump is kept when it is among the KEEP newest good dumps or younger than
    MAX_AGE_DAYS days (either rule keeps it; without either rule every verified dump is kept).
    With VERIFY (entry -> problem or None, e.g. its checksum checked), only dumps that pass it
    count toward KEEP: a damaged dump is reported and kept, never counted. The newest verified
    dump is always kept. Partial dumps older than the newest verified one are leftovers of runs
    that died and are removed; newer ones may be in progress and are kept. Unverified dumps
    (sidecar files missing, metadata unreadable or not saying verified) and damaged ones are
    reported, never removed unless REMOVE_UNVERIFIED (and older than the newest verified dump):
    one of them may still be the only copy that restores. Without any verified dump nothing is
    removed. What is reported is appended to REPORTED as {name, reason}.
    """
    now = now or utcnow()
    reported = [] if reported is None else reported
    verified = [entry for entry in entries if entry['verified'] and not entry['partial']]
    verified.sort(key=lambda item: (item['time'], item['name']), reverse=True)
    if not verified:
        return []
    good, damaged = [], {}
    for entry in verified:
        if keep is not None and len(good) >= keep:
            break
        problem = verify(entry) if verify and keep is not None else None
        if problem:
            damaged[entry['path']] = problem
        else:
            good.append(entry)
    newest = verified[0]
    rank = dict((entry['path'], index) for index, entry in enumerate(good))
    removals = []
    for entry in entries:
        if entry['path'] == newest['path']:
            if entry['path'] in damaged:
                reported.append({'name': entry['name'], 'reason': 'damaged (%s); kept, as the newest '
                                 'verified dump, and not counted toward keep' % damaged[entry['path']]})
            continue
        older = (entry['time'], entry['name']) < (newest['time'], newest['name'])
        problem = 'partial' if entry['partial'] else entry['problem'] if not entry['verified'] \
            else damaged.get(entry['path'])
        if problem is not None:
            if not older:
                continue
            if entry['partial'] or remove_unverified:
                removals.append(dict(entry, reason='%s, older than the newest verified dump'
                                     % ('partial' if entry['partial'] else 'unverified (%s)' % problem)))
            else:
                reported.append({'name': entry['name'], 'reason': '%s; kept (not counted toward keep): remove it '
                                 'by hand, or with remove_unverified, once no restore needs it' % problem})
            continue
        if keep is None and max_age_days is None:
            continue
        by_count = keep is not None and rank.get(entry['path'], keep) < keep
        by_age = max_age_days is not None and now - entry['time'] < datetime.timedelta(days=max_age_days)
        if by_count or by_age:
            continue
        reasons = []
        if keep is not None:
            reasons.append('not among the %d newest' % keep)
        if max_age_days is not None:
            reasons.append('%d days old or more' % max_age_days)
        removals.append(dict(entry, reason=' and '.join(reasons)))
    removals.sort(key=lambda item: (item['time'], item['name']))
    return removals


def checked(entry):
    """None when the dump of ENTRY matches its checksum file, else what is wrong."""
    try:
        verify_checksum(entry['path'])
    except BackupError as exc:
        return str(exc).split('. Nothing was changed', maxsplit=1)[0]
    return None


def remove_dump(directory, entry):
    """Remove a dump and everything beside it; return the paths removed. The metadata goes
    first, so a half-removed dump never counts as verified."""
    if entry['partial']:
        return [entry['path']] if remove_path(entry['path']) else []
    paths = companions(directory, entry['name'])
    removed = []
    for key in ('json', 'sha256', 'path', 'globals'):
        if remove_path(paths[key]):
            removed.append(paths[key])
    return removed


# ---- dump ------------------------------------------------------------------------------------

def retention(result, entries, keep, max_age_days, now, remove_unverified, fresh):
    """choose_removals for a dump run: the dumps counted toward KEEP have their checksums checked
    (all but FRESH, the dump this run just verified, or in check mode the one it would make);
    what is kept unverified or damaged goes to RESULT's problems and warnings."""
    problems = []
    removals = choose_removals(entries, keep, max_age_days, now,
                               verify=lambda entry: None if entry['path'] == fresh else checked(entry),
                               remove_unverified=remove_unverified, reported=problems)
    result['problems'] = problems
    result['warnings'].extend('%s: %s' % (item['name'], item['reason']) for item in problems)
    return removals


def private_files(path):
    """Make the dump at PATH (a file, or a directory and its files) readable by its owner only:
    0600 files, 0700 directories."""
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            private_files(os.path.join(path, name))
    elif os.path.isfile(path) and not os.path.islink(path):
        os.chmod(path, 0o600)


def dump(pg, backup_dir, database, check_mode=False, **options):
    """Dump DATABASE into BACKUP_DIR under a temporary name, rename it, verify it, write its
    checksum and metadata (and the globals), then apply retention (OPTIONS: fmt, jobs, compress,
    label, globals_dump, keep, max_age_days, remove_unverified, space_check, now, clock,
    statvfs_free). Returns the result
    dict of the postgresql_dump module. Every file it writes is its owner's only (0600,
    directories 0700), whatever the caller's umask: dumps hold the data, the globals password
    hashes."""
    if check_mode:
        return _dump(pg, backup_dir, database, check_mode=True, **options)
    # pg_dump and pg_dumpall create their files with the umask they inherit.
    umask = os.umask(0o077)
    try:
        return _dump(pg, backup_dir, database, **options)
    finally:
        os.umask(umask)


def _dump(pg, backup_dir, database, fmt='custom', jobs=1, compress=None, label=None, globals_dump=False,
          keep=None, max_age_days=None, remove_unverified=False, space_check=True, check_mode=False, now=None,
          clock=time.monotonic, statvfs_free=free_space):
    check_database(database)
    check_format(fmt)
    label = check_label(label)
    check_positive(jobs, 'jobs', allow_none=False)
    keep = check_positive(keep, 'keep')
    max_age_days = check_positive(max_age_days, 'max_age_days')
    if jobs > 1 and fmt != 'directory':
        raise BackupError('jobs=%d needs format=directory: only the directory format is dumped in '
                          'parallel (pg_restore reads custom dumps in parallel too)' % jobs)
    backup_dir = os.path.abspath(backup_dir)
    result = {'changed': True, 'database': database, 'backup_dir': backup_dir, 'format': fmt,
              'label': label, 'path': None, 'name': None, 'size': None, 'checksum': None,
              'duration': None, 'globals_path': None, 'metadata': None, 'removed': [], 'problems': [],
              'actions': [], 'warnings': [], 'commands': pg.commands}
    if os.path.lexists(backup_dir) and not os.path.isdir(backup_dir):
        raise BackupError('backup_dir %s exists and is not a directory' % backup_dir)
    found = scan(backup_dir, database)
    before = [entry['name'] for entry in found if entry['verified']]
    # The new dump needs about what the last one of the same format took, plus 10% (the first
    # dump of a database is not estimated).
    last = choose_latest([entry for entry in found if entry['format'] == fmt])
    if space_check and last is not None:
        check_space('a dump of database %s' % database, int(dump_size(last['path']) * 1.1), backup_dir,
                    'its last dump, %s, plus 10%%' % last['name'], statvfs_free)

    # pg_dump's version decides the compression arguments; without compression it is read from
    # the dump's own header, and the dump costs no extra program run.
    compress_argv = []
    if compress or check_mode:
        try:
            pg_dump_major = pg.version('pg_dump')[0]
        except BackupError as exc:
            if not check_mode:
                raise
            result['warnings'].append('pg_dump cannot be run yet (%s); in a real run it must be installed' % exc)
        else:
            compress_argv = compress_args(compress, pg_dump_major, fmt)

    now = now or utcnow()
    name = dump_name(database, now, label, fmt)
    if check_mode:
        result['name'] = name
        result['path'] = os.path.join(backup_dir, name)
        if not os.path.isdir(backup_dir):
            result['actions'].append('create %s' % backup_dir)
        result['actions'].append('dump database %s (%s format) to %s' % (database, fmt, result['path']))
        if globals_dump:
            result['actions'].append('dump the roles and tablespaces to %s' % companions(backup_dir, name)['globals'])
        planned = scan(backup_dir, database)
        planned.append(dict(parse_dump_name(name, database), path=result['path'], partial=False,
                            verified=True, metadata=None, problem=None))
        removals = retention(result, planned, keep, max_age_days, now, remove_unverified, result['path'])
        for entry in removals:
            result['actions'].append('remove %s (%s)' % (entry['name'], entry['reason']))
        result['removed'] = [entry['path'] for entry in removals]
        result['diff'] = {'before': {'dumps': before},
                          'after': {'dumps': sorted(set(before) - set(e['name'] for e in removals)) + [name]}}
        return result

    if not os.path.isdir(backup_dir):
        os.makedirs(backup_dir, 0o700)
        result['actions'].append('create %s' % backup_dir)
    # One name per second: a second dump in the same second waits for the next one.
    for dummy in range(3):
        paths = companions(backup_dir, name)
        if not any(os.path.lexists(paths[key]) for key in ('path', 'partial', 'json', 'sha256')):
            break
        time.sleep(1.05 - (time.time() % 1))
        now = utcnow()
        name = dump_name(database, now, label, fmt)
    else:
        raise BackupError('%s already exists' % paths['path'])

    started = clock()
    remove_path(paths['partial'])
    argv = pg_dump_argv(pg.program('pg_dump'), database, paths['partial'], fmt, jobs, compress_argv,
                        pg.connection_args())
    rc, err, row_counts = pg.dump_in_snapshot(argv, database, backup_dir)
    if rc != 0:
        remove_path(paths['partial'])
        raise BackupError('pg_dump of database %s failed (rc=%s), nothing was kept: %s'
                          % (database, rc, tail(err)))
    private_files(paths['partial'])
    os.rename(paths['partial'], paths['path'])
    fsync_dir(backup_dir)
    result['actions'].append('dump database %s (%s format) to %s' % (database, fmt, paths['path']))
    server_version, pg_dump_version = dump_versions(verify_contents(pg, paths['path'], fmt))
    if pg_dump_version:
        pg_dump_version = '%d.%d' % parse_version(pg_dump_version)
    checksum = write_checksum(paths['path'])
    size = dump_size(paths['path'])

    globals_path = None
    if globals_dump:
        globals_partial = os.path.join(backup_dir, partial_name(os.path.basename(paths['globals'])))
        remove_path(globals_partial)
        rc, out, err = pg.run(pg_dumpall_globals_argv(pg.program('pg_dumpall'), globals_partial,
                                                      pg.connection_args()))
        if rc != 0:
            remove_path(globals_partial)
            raise BackupError('pg_dumpall --globals-only failed (rc=%s); the dump %s was written but is '
                              'not marked verified: %s' % (rc, paths['path'], tail(err or out)))
        private_files(globals_partial)
        os.rename(globals_partial, paths['globals'])
        globals_path = paths['globals']
        result['actions'].append('dump the roles and tablespaces to %s' % globals_path)
    duration = round(clock() - started, 3)
    finished = utcnow()
    metadata = {
        'database': database, 'file': os.path.basename(paths['path']), 'format': fmt, 'size': size,
        'sha256': checksum, 'server_version': server_version,
        'pg_dump_version': pg_dump_version, 'started': iso(now), 'finished': iso(finished),
        'duration': duration, 'label': label, 'verified': True, 'host': socket.gethostname(),
        'compress': compress or None, 'jobs': jobs,
        'globals': os.path.basename(globals_path) if globals_path else None,
        # Each table's rows in the dumped snapshot: what a test restore must give back.
        'row_counts': row_counts,
    }
    write_json(paths['json'], metadata)

    removals = retention(result, scan(backup_dir, database), keep, max_age_days, now, remove_unverified,
                         paths['path'])
    for entry in removals:
        remove_dump(backup_dir, entry)
        result['actions'].append('remove %s (%s)' % (entry['name'], entry['reason']))
    if removals:
        fsync_dir(backup_dir)
    after = [entry['name'] for entry in scan(backup_dir, database) if entry['verified']]
    result.update(path=paths['path'], name=os.path.basename(paths['path']), size=size, checksum=checksum,
                  duration=duration, globals_path=globals_path, metadata=metadata,
                  removed=[entry['path'] for entry in removals],
                  diff={'before': {'dumps': before}, 'after': {'dumps': after}})
    return result


# ---- restore ---------------------------------------------------------------------------------

def describe_good(entry):
    """What is true of a dump without a problem, in a list of the dumps found."""
    return 'verified, label %s' % entry['label'] if entry['label'] else 'verified, no label'


def passed_over(entries, chosen, label=None):
    """[{name, reason}] of the dumps newer than CHOSEN that `latest` did not take, newest first:
    a newer dump is never skipped silently."""
    skipped = []
    for entry in entries:
        if (entry['time'], entry['name']) <= (chosen['time'], chosen['name']):
            continue
        if entry['problem']:
            reason = entry['problem']
        elif label is not None and entry['label'] != label:
            reason = 'labelled %s, not %s' % (entry['label'], label) if entry['label'] else 'no label, not %s' % label
        else:
            continue
        skipped.append({'name': entry['name'], 'reason': reason})
    return skipped[::-1]


def pick_dump(backup_dir, database, dump_ref='latest', label=None):
    """(path, format, entry-or-None, [dumps passed over]) of the dump to restore. `latest` is the
    newest verified dump of DATABASE (with LABEL, when given); a name is a file or directory in
    BACKUP_DIR."""
    if dump_ref in (None, '', 'latest'):
        entries = scan(backup_dir, database)
        chosen = choose_latest(entries, label)
        if chosen is None:
            others = ', '.join('%s (%s)' % (entry['name'], entry['problem'] or describe_good(entry))
                               for entry in entries) or 'none'
            raise BackupError('no verified dump of database %s%s in %s; dumps found: %s'
                              % (database, ' labelled %s' % label if label else '', backup_dir, others))
        return chosen['path'], chosen['format'], chosen, passed_over(entries, chosen, label)
    if '/' in dump_ref or dump_ref in ('.', '..') or dump_ref.startswith('.'):
        raise BackupError('dump=%r must be the name of a dump in backup_dir (no "/"), or latest' % dump_ref)
    fmt = format_of(dump_ref)
    if fmt is None:
        raise BackupError('dump=%r: a dump name ends in .dump (custom), .dir (directory) or .sql (plain)'
                          % dump_ref)
    path = os.path.join(backup_dir, dump_ref)
    if not os.path.lexists(path):
        raise BackupError('the dump %s does not exist' % path)
    return path, fmt, None, []


def dump_source(path, contents):
    """The database a dump was made from, as its metadata file or its own table of contents
    (``;     dbname: NAME``) says; None when neither says."""
    metadata, dummy = read_metadata(path)
    if isinstance(metadata, dict) and isinstance(metadata.get('database'), str):
        return metadata['database']
    found = re.search(r'^;\s+dbname: (.+)$', contents or '', re.M)
    return found.group(1).strip() if found else None


def restore(pg, backup_dir, database, dump_ref='latest', label=None, jobs=1, keep_replaced=2,
            allow_other_database=False, space_check=True, check_mode=False, now=None, clock=time.monotonic,
            sleep=time.sleep, statvfs_free=free_space):
    """Check the dump (checksum, then table of contents), restore it into a new database and,
    only when that succeeded, swap it in for DATABASE. Returns the postgresql_restore result."""
    check_database(database)
    label = check_label(label)
    check_positive(jobs, 'jobs', allow_none=False)
    if isinstance(keep_replaced, bool) or not isinstance(keep_replaced, int) or keep_replaced < 0:
        raise BackupError('keep_replaced must be a number of databases, 0 or more: got %r' % (keep_replaced,))
    backup_dir = os.path.abspath(backup_dir)
    started = clock()
    path, fmt, dummy, skipped = pick_dump(backup_dir, database, dump_ref, label)
    result = {'changed': True, 'database': database, 'dump': path, 'format': fmt, 'checksum': None,
              'replaced_by': None, 'restored_into': None, 'duration': None, 'passed_over': skipped,
              'actions': [], 'warnings': ['latest passed over the newer dump %s: %s' % (item['name'], item['reason'])
                                          for item in skipped],
              'commands': pg.commands}
    # Read-only checks first, in check mode too: nothing is touched before they pass.
    result['checksum'] = verify_checksum(path)
    source = dump_source(path, verify_contents(pg, path, fmt))
    if source is not None and source != database:
        if not allow_other_database:
            raise BackupError('the dump %s was made from database %s, not %s: set allow_other_database to '
                              'restore it into %s. Nothing was changed'
                              % (os.path.basename(path), source, database, database))
        result['warnings'].append('the dump %s was made from database %s and is restored into %s, as '
                                  'allow_other_database says' % (os.path.basename(path), source, database))
    if fmt == 'plain' and jobs > 1:
        result['warnings'].append('jobs=%d is ignored: a plain SQL dump is restored by psql in one '
                                  'transaction' % jobs)
    now = now or utcnow()
    temp, replaced = database_names(database, now)
    target, taken, earlier = pg.databases_info(database, [temp, replaced])
    if taken:
        raise BackupError('database %s already exists (left by an interrupted restore?); drop it or '
                          'retry in a second. Nothing was changed' % ', '.join(taken))
    if space_check:
        check_copy_space(pg, target, 'the temporary database %s' % temp, statvfs_free)
    kept = replaced if target and keep_replaced else None
    # The replaced databases beyond keep_replaced, oldest first: this restore's own when 0.
    replaced_all = earlier + ([replaced] if target else [])
    dropped = replaced_all[:max(0, len(replaced_all) - keep_replaced)]
    result['replaced_by'] = kept
    result['dropped_replaced'] = dropped
    result['restored_into'] = database
    result['actions'].append('create database %s (%s) and restore %s into it'
                             % (temp, 'with the %s of %s' % (describe_properties(target), database) if target
                                else 'owned by the login user', os.path.basename(path)))
    if target:
        result['actions'].append('rename database %s to %s and %s to %s' % (database, replaced, temp, database))
    for name in dropped:
        result['actions'].append('drop database %s (the data a restore replaced; keep_replaced=%d)'
                                 % (name, keep_replaced))
    if not target:
        result['actions'].append('rename database %s to %s (there was no database %s)' % (temp, database, database))
    result['diff'] = {'before': {'database': database, 'exists': bool(target), 'restored_from': None},
                      'after': {'database': database, 'exists': True, 'restored_from': os.path.basename(path),
                                'replaced_data_in': kept}}
    if check_mode:
        return result

    # The database and its privileges in one psql run (each statement its own transaction).
    statements = [create_database_sql(temp, target)]
    if target and target['has_acl']:
        statements.append('REVOKE ALL ON DATABASE %s FROM PUBLIC' % quote_ident(temp))
        for grant in target['grants']:
            statements.append('GRANT %s ON DATABASE %s TO %s%s' % (
                grant['privilege'], quote_ident(temp), grant['grantee'],
                ' WITH GRANT OPTION' if grant['grantable'] else ''))
    try:
        pg.execute(statements, 'creating the temporary database %s with the privileges of %s' % (temp, database))
        rc, out, err = restore_into(pg, path, fmt, temp, jobs)
        if rc != 0:
            raise BackupError('restoring %s into the temporary database %s failed (rc=%s); it was dropped '
                              'and database %s was not touched: %s'
                              % (os.path.basename(path), temp, rc, database, tail(err or out)))
        properties = database_property_sql(temp, target) if target else []
        if properties:
            pg.execute(properties, 'giving the temporary database %s the connection limit, settings and comment '
                       'of %s' % (temp, database))
        if target:
            swap(pg, database, temp, replaced, target['allow_connections'], sleep)
        else:
            pg.execute(['ALTER DATABASE %s RENAME TO %s' % (quote_ident(temp), quote_ident(database))],
                       'renaming %s to %s' % (temp, database))
    except BaseException:
        drop_quietly(pg, temp)
        raise
    # The restore is done: a replaced database that cannot be dropped now (a session in it) is
    # reported, not a failure.
    for name in dropped:
        try:
            pg.execute(['DROP DATABASE %s' % quote_ident(name)], 'dropping the replaced database %s' % name)
        except BackupError as exc:
            result['dropped_replaced'] = [item for item in result['dropped_replaced'] if item != name]
            result['warnings'].append('the replaced database %s was kept: %s' % (name, exc))
    result['duration'] = round(clock() - started, 3)
    return result


def check_copy_space(pg, target, what, statvfs_free=free_space):
    """A new copy of database TARGET (databases_info) needs about its size where the server keeps
    its data: checked when that is on this host (nothing to check without TARGET)."""
    data_directory = (target or {}).get('data_directory')
    if target and data_directory and os.path.isdir(data_directory) and (pg.host is None or pg.host.startswith('/')):
        check_space(what, int(target.get('size') or 0), data_directory, 'the size of database %s' % target['name'],
                    statvfs_free)


def restore_into(pg, path, fmt, database, jobs=1):
    """Restore the dump at PATH (format FMT) into the existing DATABASE: (rc, out, err)."""
    if fmt == 'plain':
        argv = psql_restore_argv(pg.program('psql'), path, database, pg.connection_args())
    else:
        argv = pg_restore_argv(pg.program('pg_restore'), path, database, jobs, pg.connection_args())
    return pg.run(argv)


def drop_quietly(pg, name):
    """Drop database NAME if it exists (after a failure: its own error must not hide the first)."""
    try:
        pg.execute(['DROP DATABASE IF EXISTS %s' % quote_ident(name)], 'dropping %s' % name)
    except BackupError:
        pass


def swap(pg, database, temp, replaced, allow_connections, sleep=time.sleep, attempts=5):
    """Close DATABASE to new connections, end the open ones, and rename DATABASE to REPLACED and
    TEMP to DATABASE in one transaction. On failure DATABASE is as it was."""
    ident, temp_ident, replaced_ident = quote_ident(database), quote_ident(temp), quote_ident(replaced)
    close = ['ALTER DATABASE %s ALLOW_CONNECTIONS false' % ident] if allow_connections else []
    terminate = ('SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s '
                 'AND pid <> pg_backend_pid()' % quote_literal(database))
    # Both renames or neither: one transaction.
    renames = 'ALTER DATABASE %s RENAME TO %s; ALTER DATABASE %s RENAME TO %s' % (
        ident, replaced_ident, temp_ident, ident)
    reopen = ['ALTER DATABASE %s ALLOW_CONNECTIONS true' % replaced_ident] if allow_connections else []
    # One psql run: close, end the sessions, rename, reopen what is now the replaced database.
    # psql stops at the first error, so a failed rename leaves DATABASE closed: reopened below.
    try:
        for attempt in range(attempts):
            try:
                pg.execute(close + [terminate, renames] + reopen, 'swapping database %s for %s' % (temp, database))
                break
            except BackupError as exc:
                if attempt == attempts - 1 or 'being accessed by other users' not in str(exc):
                    raise
                close = []
                sleep(1)
    except BaseException:
        if allow_connections:
            pg.execute(['ALTER DATABASE %s ALLOW_CONNECTIONS true' % ident],
                       'reopening database %s to connections' % database)
        raise


# ---- test restore ----------------------------------------------------------------------------

def compare_row_counts(recorded, restored):
    """What differs between the RECORDED row counts of a dump and those RESTORED from it."""
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        if table not in restored:
            problems.append('table %s (%s rows at dump time) is missing' % (table, recorded[table]))
        elif table not in recorded:
            problems.append('table %s (%s rows) was not in the dump\'s row counts' % (table, restored[table]))
        elif recorded[table] != restored[table]:
            problems.append('table %s has %s rows, %s at dump time' % (table, restored[table], recorded[table]))
    return problems


def record_test(entry, record):
    """Write RECORD into the metadata of the dump of ENTRY (restore_test): a failed one is no
    longer verified (scan)."""
    metadata = dict(entry['metadata'], restore_test=record)
    write_json(entry['path'] + METADATA_SUFFIX, metadata)


def test_restore(pg, backup_dir, database, jobs=1, space_check=True, now=None, clock=time.monotonic,
                 statvfs_free=free_space):
    """Restore the latest verified dump of DATABASE into a scratch database, compare every
    table's row count with those the dump recorded, drop the scratch database, and record the
    result in the dump's metadata. Returns {result: passed or failed, dump, tables, problems,
    duration, warnings, ...}. A dump that fails (damaged, not restorable, rows differ) is marked
    failed and never chosen as latest again; a failure that is not the dump's (the server, the
    space, the scratch name) raises BackupError and marks nothing."""
    check_database(database)
    check_positive(jobs, 'jobs', allow_none=False)
    backup_dir = os.path.abspath(backup_dir)
    started = clock()
    now = now or utcnow()
    path, fmt, entry, skipped = pick_dump(backup_dir, database)
    scratch = database_names(database, now, ('test',))[0]
    result = {'changed': True, 'database': database, 'dump': path, 'scratch': scratch, 'result': None,
              'tables': None, 'problems': [], 'duration': None, 'at': iso(now), 'passed_over': skipped,
              'warnings': ['latest passed over the newer dump %s: %s' % (item['name'], item['reason'])
                           for item in skipped], 'commands': pg.commands}
    target, taken, dummy = pg.databases_info(database, [scratch])
    if taken:
        raise BackupError('database %s already exists (left by an interrupted test restore?); drop it '
                          'or retry in a second. Nothing was changed' % scratch)
    if space_check:
        check_copy_space(pg, target, 'the scratch database %s' % scratch, statvfs_free)
    recorded = (entry['metadata'] or {}).get('row_counts')
    problems = []
    try:
        verify_checksum(path)
        verify_contents(pg, path, fmt)
    except BackupError as exc:
        problems.append(str(exc).split('. Nothing was changed', maxsplit=1)[0])
    if not problems:
        pg.execute([create_database_sql(scratch, target)], 'creating the scratch database %s' % scratch)
        try:
            rc, out, err = restore_into(pg, path, fmt, scratch, jobs)
            if rc != 0:
                problems.append('restoring it failed (rc=%s): %s' % (rc, tail(err or out)))
            else:
                restored = pg.row_counts(scratch)
                result['tables'] = len(restored)
                if recorded is None:
                    result['warnings'].append('the dump recorded no row counts (made before they were): '
                                              'it restored, its rows were not compared')
                else:
                    problems.extend(compare_row_counts(recorded, restored))
        finally:
            pg.execute(['DROP DATABASE IF EXISTS %s' % quote_ident(scratch)],
                       'dropping the scratch database %s' % scratch)
    result['problems'] = problems
    result['result'] = 'failed' if problems else 'passed'
    result['duration'] = round(clock() - started, 3)
    record_test(entry, {'result': result['result'], 'at': result['at'], 'problems': problems,
                        'tables': result['tables'], 'duration': result['duration']})
    return result


# ---- command line ----------------------------------------------------------------------------

def update_status(path, **keys):
    """Set KEYS in the JSON status file at PATH, keeping its other keys (the dump's and the test
    restore's share one file); readable by monitoring (0644)."""
    try:
        with open(path, 'r', encoding='utf-8') as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    status.update(keys)
    write_json(path, status, 0o644)
    return status


def write_status(path, result):
    return update_status(path, last_success=iso(utcnow()), file=result['path'], size=result['size'],
                         duration=result['duration'], database=result['database'], sha256=result['checksum'],
                         removed=result['removed'], problems=result['problems'])


def write_test_status(path, database, result=None, error=None):
    """The test restore's RESULT (or its ERROR) as the status file's restore_test."""
    if result is None:
        record = {'result': 'failed', 'dump': None, 'at': iso(utcnow()), 'duration': None, 'tables': None,
                  'problems': [error]}
    else:
        record = dict((key, result[key]) for key in ('result', 'dump', 'at', 'duration', 'tables', 'problems'))
    return update_status(path, database=database, restore_test=record)


def main(argv=None, runner=subprocess_runner):
    parser = argparse.ArgumentParser(prog='pg_backup.py', description='Verified PostgreSQL dumps (weblab.stack).')
    commands = parser.add_subparsers(dest='command')
    command = commands.add_parser('dump', help='dump one database, verify it, apply retention')
    command.add_argument('--dir', required=True, help='the backup directory')
    command.add_argument('--database', required=True)
    command.add_argument('--format', default='custom', choices=sorted(FORMATS))
    command.add_argument('--jobs', type=int, default=1, help='parallel jobs (directory format)')
    command.add_argument('--compress', help='gzip:LEVEL, zstd:LEVEL, lz4, a gzip level or 0')
    command.add_argument('--label')
    command.add_argument('--globals', action='store_true', help='also pg_dumpall --globals-only')
    command.add_argument('--keep', type=int, help='keep the N newest verified dumps')
    command.add_argument('--max-age-days', type=int, help='keep the dumps younger than D days')
    command.add_argument('--no-space-check', action='store_true',
                         help='dump even when the last dump of the database plus 10%% would not fit')
    command.add_argument('--remove-unverified', action='store_true',
                         help='also remove unverified and damaged dumps older than the newest verified one')
    command.add_argument('--status-file', help='JSON status written on success, for monitoring')
    tester = commands.add_parser('test-restore', help='restore the latest verified dump into a scratch database, '
                                 'compare its row counts with the dump\'s, drop it')
    tester.add_argument('--dir', required=True, help='the backup directory')
    tester.add_argument('--database', required=True)
    tester.add_argument('--jobs', type=int, default=1, help='parallel pg_restore jobs')
    tester.add_argument('--no-space-check', action='store_true',
                        help='restore even when the database\'s size does not seem to fit')
    tester.add_argument('--status-file', help='JSON status file whose restore_test is set, for monitoring')
    for each in (command, tester):
        each.add_argument('--host', help='server host or socket directory (default: the local socket)')
        each.add_argument('--port', type=int)
        each.add_argument('--user')
    args = parser.parse_args(argv)
    if args.command not in ('dump', 'test-restore'):
        parser.print_usage(sys.stderr)
        return 2
    pg = Postgres(runner, host=args.host, port=args.port, user=args.user)
    if args.command == 'test-restore':
        return main_test_restore(pg, args)
    try:
        result = dump(pg, args.dir, args.database, fmt=args.format, jobs=args.jobs, compress=args.compress,
                      label=args.label, globals_dump=args.globals, keep=args.keep,
                      max_age_days=args.max_age_days, remove_unverified=args.remove_unverified,
                      space_check=not args.no_space_check)
        if args.status_file:
            write_status(args.status_file, result)
    except (BackupError, OSError) as exc:
        sys.stderr.write('pg_backup: dump of database %s failed: %s\n' % (args.database, exc))
        return 1
    for line in result['actions']:
        sys.stdout.write('%s\n' % line)
    for line in result['warnings']:
        sys.stderr.write('pg_backup: warning: %s\n' % line)
    sys.stdout.write('verified dump %s: %s bytes, sha256 %s, %s s\n'
                     % (result['path'], result['size'], result['checksum'], result['duration']))
    return 0


def main_test_restore(pg, args):
    try:
        result = test_restore(pg, args.dir, args.database, jobs=args.jobs, space_check=not args.no_space_check)
    except (BackupError, OSError) as exc:
        if args.status_file:
            write_test_status(args.status_file, args.database, error=str(exc))
        sys.stderr.write('pg_backup: test restore of database %s failed: %s\n' % (args.database, exc))
        return 1
    if args.status_file:
        write_test_status(args.status_file, args.database, result)
    for line in result['warnings']:
        sys.stderr.write('pg_backup: warning: %s\n' % line)
    if result['result'] != 'passed':
        sys.stderr.write('pg_backup: test restore of database %s failed: %s is marked failed (never chosen as '
                         'latest): %s\n' % (args.database, result['dump'], '; '.join(result['problems'])))
        return 1
    sys.stdout.write("test restore of %s passed: %s tables with the row counts of the dump's time, %s s\n"
                     % (result['dump'], result['tables'], result['duration']))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
