"""bench/backup: dump and restore times of weblab.stack.postgresql_dump/postgresql_restore,
side by side with raw pg_dump/pg_restore and community.postgresql.postgresql_db, on a throwaway
PostgreSQL cluster on 127.0.0.1. Figures are ratios against baselines measured in the same run.

Run it with `make bench` (it needs the collection mirrored to .build/ansible_collections/
weblab/stack and the venv's ansible). Standard library only. See README.md beside it.
"""

import argparse
import datetime
import glob
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
COLLECTION = HERE.parents[1]
sys.path.insert(0, str(COLLECTION / 'tests' / 'integration'))
from throwaway_cluster import ClusterError, ThrowawayCluster  # noqa: E402  pylint: disable=wrong-import-position
MB = 1000 * 1000
# Below this ratio a contender counts as "no slower" than the other: medians of a few rounds on
# a shared 2-core machine move by a few per cent between runs (see the spread columns).
NOISE = 1.05
# Our parallel restore's speed-up (jobs=1 / jobs=2) against raw pg_restore's (-j1 / -j2) in the
# same run: on 2 CPUs raw itself gains only about 1.12x, so an absolute 1.3x is out of reach;
# ours must keep at least this fraction of raw's gain (the absolute speed-up is printed too).
PARALLEL_OF_RAW = 0.95


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


class Deadline:
    """The whole run's time budget: every command gets what is left of it as its timeout."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self):
        left = self.end - time.monotonic()
        if left <= 0:
            raise BenchError('over the time budget of %d s (--budget): stopped' % self.seconds)
        return left


DEADLINE = Deadline(1200)


def run(argv, env=None, check=True, input_text=None):
    """Run ARGV (no shell) within the deadline; return the CompletedProcess."""
    try:
        done = subprocess.run([str(arg) for arg in argv], env=env, input=input_text, capture_output=True,
                              text=True, check=False, timeout=DEADLINE.left())
    except subprocess.TimeoutExpired:
        raise BenchError('over the time budget of %d s (--budget) while running %s'
                         % (DEADLINE.seconds, argv[0])) from None
    if check and done.returncode != 0:
        raise BenchError('%s failed (rc=%d): %s%s' % (
            ' '.join(map(str, argv)), done.returncode, done.stdout[-2000:], done.stderr[-2000:]))
    return done


# ---- the throwaway cluster -------------------------------------------------------------------

class Cluster(ThrowawayCluster):
    """The integration tests' throwaway server, with the bench's settings and helpers.

    fsync=off: the server's own flushes would time the disk of the machine the bench runs on
    (a shared CI disk varies from run to run), and they cost the same whatever program restores;
    the dump files are still written (and fsynced by pg_dump and by our module) as in production.
    autovacuum=off: it would otherwise analyze each restored database while the next
    contender is timed.
    """

    def __init__(self):
        super().__init__('weblab-bench-pg-', settings=('fsync=off', 'autovacuum=off'))

    def psql(self, sql, database='postgres'):
        done = run([self.bin_dir / 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', database,
                    '-c', sql], env=self.env)
        return done.stdout.strip()

    def version(self):
        return self.psql('SHOW server_version')

    def create(self, name):
        self.drop(name)
        self.psql('CREATE DATABASE "%s"' % name)

    def drop(self, name):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def rename(self, old, new):
        self.psql('ALTER DATABASE "%s" RENAME TO "%s"' % (old, new))

    def databases(self, like):
        out = self.psql("SELECT datname FROM pg_database WHERE datname LIKE '%s'" % like)
        return [name for name in out.split('\n') if name]

    def size(self, name):
        return int(self.psql("SELECT pg_database_size('%s')" % name))

    def settle(self):
        """Before each timed step: the previous step's dirty buffers and files go to disk now,
        not during the next contender's time."""
        self.psql('CHECKPOINT')
        os.sync()


# ---- datasets --------------------------------------------------------------------------------

class Dataset:
    """A source database, built once; `check` tells a complete restore of it from a broken one."""

    def __init__(self, key, title, database, count_table):
        self.key = key
        self.title = title
        self.database = database
        self.count_table = count_table
        self.expected = None
        self.size = None

    def fingerprint(self, cluster, database):
        """(rows of the biggest table, tables, indexes) of DATABASE."""
        out = cluster.psql("SELECT (SELECT count(*) FROM %s) || ' ' || "
                           "(SELECT count(*) FROM pg_tables WHERE schemaname = 'public') || ' ' || "
                           "(SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')"
                           % self.count_table, database)
        return tuple(int(value) for value in out.split())

    def seal(self, cluster):
        """Freeze and analyze, so the first dump does not pay for setting hint bits."""
        cluster.psql('VACUUM (FREEZE, ANALYZE)', self.database)
        self.expected = self.fingerprint(cluster, self.database)
        self.size = cluster.size(self.database)

    def check(self, cluster, database):
        found = self.fingerprint(cluster, database)
        if found != self.expected:
            raise BenchError('database %s restored from a dump of %s holds (rows, tables, indexes) %s, '
                             'not %s' % (database, self.database, found, self.expected))


def build_pgbench(cluster, scale):
    dataset = Dataset('pgbench', 'pgbench, scale %d' % scale, 'bench_pgbench', 'pgbench_accounts')
    cluster.create(dataset.database)
    run(['pgbench', '-i', '-q', '-s', scale, dataset.database], env=cluster.env)
    dataset.seal(cluster)
    return dataset


def build_multi(cluster, tables, rows):
    """TABLES tables of ROWS rows each: random ints and times, an md5 tag and 88 characters of
    base64 of random bytes (gzip saves little on either), a primary key and 3 secondary indexes."""
    dataset = Dataset('multi', 'multi-table, %d tables x %d rows, 3 secondary indexes each' % (tables, rows),
                      'bench_multi', 't1')
    cluster.create(dataset.database)
    for number in range(1, tables + 1):
        table = 't%d' % number
        cluster.psql(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, k integer NOT NULL, tag text NOT NULL, "
            "created timestamptz NOT NULL, payload text NOT NULL); "
            "INSERT INTO {t} SELECT i, (random() * 1e6)::int, md5(random()::text), "
            "timestamptz '2020-01-01' + random() * interval '1500 days', "
            "translate(encode(decode(md5(random()::text) || md5(random()::text) || md5(random()::text) "
            "|| md5(random()::text), 'hex'), 'base64'), E'\\n', '') "
            "FROM generate_series(1, {rows}) i; "
            "CREATE INDEX ON {t} (k); CREATE INDEX ON {t} (tag); CREATE INDEX ON {t} (created, k)"
            .format(t=table, rows=rows), dataset.database)
    dataset.seal(cluster)
    return dataset


# ---- contenders ------------------------------------------------------------------------------

def ansible_playbook():
    beside = pathlib.Path(sys.executable).with_name('ansible-playbook')
    if beside.exists():
        return str(beside)
    found = shutil.which('ansible-playbook')
    if not found:
        raise BenchError('ansible-playbook is neither beside %s nor on PATH: run `make bench`' % sys.executable)
    return found


class Bench:
    """Runs and times the contenders; keeps every sample."""

    def __init__(self, cluster, work):
        self.cluster = cluster
        self.work = work
        self.samples = {}
        self.sizes = {}
        self.plays = 0
        self.ansible_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTION.parents[2]),
                                ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0',
                                ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
                                ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json')
        for key in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE'):
            self.ansible_env.pop(key, None)
        self.playbook_program = ansible_playbook()

    def record(self, key, seconds, size=None):
        self.samples.setdefault(key, []).append(seconds)
        if size is not None:
            self.sizes.setdefault(key, []).append(size)

    def timed(self, argv, env):
        self.cluster.settle()
        started = time.monotonic()
        run(argv, env=env)
        return time.monotonic() - started

    def play(self, module, args, before=()):
        """Time one task of MODULE (after the tasks BEFORE, (module, args) pairs, in the same
        play) through ansible-playbook, as tests/integration runs modules. Returns (seconds,
        the last task's result)."""
        self.plays += 1
        playbook = self.work / ('play%d.json' % self.plays)
        tasks = [{'name': 'Run %s %d' % (name, number), name: task_args}
                 for number, (name, task_args) in enumerate(list(before) + [(module, args)])]
        play = [{'name': 'Bench one module', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
        playbook.write_text(json.dumps(play), encoding='utf-8')
        argv = [self.playbook_program, '-i', 'localhost,', '-c', 'local',
                '-e', 'ansible_python_interpreter=' + sys.executable, str(playbook)]
        self.cluster.settle()
        started = time.monotonic()
        done = run(argv, env=self.ansible_env, check=False)
        seconds = time.monotonic() - started
        try:
            result = json.loads(done.stdout)['plays'][0]['tasks'][-1]['hosts']['localhost']
        except (ValueError, KeyError, IndexError):
            raise BenchError('%s gave no JSON result (rc=%d):\n%s%s' % (module, done.returncode,
                                                                        done.stdout[-3000:], done.stderr[-3000:]))
        if done.returncode != 0 or result.get('failed'):
            raise BenchError('%s failed: %s' % (module, result.get('msg') or result))
        playbook.unlink()
        return seconds, result

    # -- the steps of one round; each records its sample under (dataset, contender, operation)

    def startup(self):
        seconds, dummy = self.play('ansible.builtin.ping', {})
        self.record(('-', 'ansible', 'ping'), seconds)

    def raw_dump(self, dataset, files):
        path = self.work / ('raw-%s.pgc' % dataset.key)
        seconds = self.timed(['pg_dump', '--format=custom', '--file=%s' % path, '--dbname=%s' % dataset.database],
                             self.cluster.env)
        files['raw'] = path
        self.record((dataset.key, 'raw', 'dump'), seconds, path.stat().st_size)

    def community_dump(self, dataset, files):
        path = self.work / ('community-%s.pgc' % dataset.key)
        seconds, dummy = self.play('community.postgresql.postgresql_db', dict(
            self.cluster.login, name=dataset.database, state='dump', target=str(path)))
        files['community'] = path
        self.record((dataset.key, 'community', 'dump'), seconds, path.stat().st_size)

    def ours_dump(self, dataset, files):
        backup_dir = self.work / ('ours-%s' % dataset.key)
        seconds, result = self.play('weblab.stack.postgresql_dump', dict(
            self.cluster.login, database=dataset.database, backup_dir=str(backup_dir), format='custom'))
        files['ours'] = backup_dir
        self.record((dataset.key, 'ours', 'dump'), seconds, result['size'])

    def raw_restore(self, dataset, files, jobs):
        target = '%s_raw%d' % (dataset.database, jobs)
        self.cluster.create(target)
        argv = ['pg_restore', '--dbname=%s' % target, str(files['raw'])]
        if jobs > 1:
            argv[1:1] = ['--jobs=%d' % jobs]
        seconds = self.timed(argv, self.cluster.env)
        self.finish_restore(dataset, target, ('raw', 'restore -j%d' % jobs), seconds)

    def community_restore(self, dataset, files):
        """postgresql_db state=restore needs its target database to exist: the play creates it
        first (state=present), as ours creates the database it restores into, on the clock."""
        target = '%s_community' % dataset.database
        seconds, dummy = self.play('community.postgresql.postgresql_db', dict(
            self.cluster.login, name=target, state='restore', target=str(files['community'])),
            before=[('community.postgresql.postgresql_db', dict(self.cluster.login, name=target, state='present'))])
        self.finish_restore(dataset, target, ('community', 'restore'), seconds)

    def ours_restore(self, dataset, files, jobs):
        """restore-latest finds the dumps by the database's name, so the source steps aside (a
        rename) and a fresh, empty database of its name is the target. Our module restores into
        a new database and swaps it in: the empty one it replaces is dropped after the clock."""
        source = dataset.database
        aside = source + '_source'
        self.cluster.rename(source, aside)
        try:
            self.cluster.create(source)
            seconds, result = self.play('weblab.stack.postgresql_restore', dict(
                self.cluster.login, database=source, backup_dir=str(files['ours']), dump='latest', jobs=jobs))
            if result.get('replaced_by'):
                self.cluster.drop(result['replaced_by'])
            self.finish_restore(dataset, source, ('ours', 'restore-latest j%d' % jobs), seconds)
        finally:
            for leftover in self.cluster.databases(source + r'\_replaced\_%') + [source]:
                self.cluster.drop(leftover)
            self.cluster.rename(aside, source)

    def finish_restore(self, dataset, target, what, seconds):
        dataset.check(self.cluster, target)
        self.record((dataset.key,) + what, seconds, self.cluster.size(target))
        self.cluster.drop(target)


def order(items, number):
    """The steps of round NUMBER: rotated by one more each round and reversed every other
    round, so no contender keeps a slot (first, last, right after another) for itself."""
    by = number % len(items)
    steps = items[by:] + items[:by]
    return steps[::-1] if number % 2 else steps


def bench_dataset(bench, dataset, rounds, progress):
    for number in range(rounds):
        files = {}
        dumps = [('raw dump', bench.raw_dump), ('community dump', bench.community_dump),
                 ('ours dump', bench.ours_dump)]
        restores = [('raw restore -j1', lambda d, f: bench.raw_restore(d, f, 1)),
                    ('community restore', bench.community_restore),
                    ('ours restore j1', lambda d, f: bench.ours_restore(d, f, 1)),
                    ('raw restore -j2', lambda d, f: bench.raw_restore(d, f, 2)),
                    ('ours restore j2', lambda d, f: bench.ours_restore(d, f, 2))]
        for label, step in order(dumps, number) + order(restores, number):
            progress('%s round %d/%d: %s' % (dataset.key, number + 1, rounds, label))
            step(dataset, files)
        for path in files.values():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


# ---- report ----------------------------------------------------------------------------------

ROWS = [
    ('raw', 'dump', 'pg_dump -Fc'),
    ('community', 'dump', 'postgresql_db state=dump'),
    ('ours', 'dump', 'postgresql_dump (verified)'),
    ('raw', 'restore -j1', 'pg_restore'),
    ('community', 'restore', 'postgresql_db present+restore'),
    ('ours', 'restore-latest j1', 'postgresql_restore latest'),
    ('raw', 'restore -j2', 'pg_restore -j2'),
    ('ours', 'restore-latest j2', 'postgresql_restore latest, jobs=2'),
]
NAMES = {'raw': 'raw', 'community': 'community.postgresql', 'ours': 'weblab.stack'}
# The baseline of each row: the raw program doing the same work with the same jobs, and
# community.postgresql's module (which restores with one job).
RAW_OF = {'dump': 'dump', 'restore -j1': 'restore -j1', 'restore': 'restore -j1',
          'restore-latest j1': 'restore -j1', 'restore -j2': 'restore -j2', 'restore-latest j2': 'restore -j2'}


def median(bench, key):
    values = bench.samples.get(key)
    return statistics.median(values) if values else None


def table(bench, dataset):
    lines = ['%s: database %.0f MB, %s %d rows; median of %d rounds' % (
        dataset.title, dataset.size / MB, dataset.count_table, dataset.expected[0],
        len(bench.samples.get((dataset.key, 'raw', 'dump'), [])))]
    header = '%-21s %-34s %8s %12s %8s %7s %7s %8s' % (
        'contender', 'operation', 'median s', 'min-max s', 'size MB', '-raw s', 'vs raw', 'vs comm.')
    lines += [header, '-' * len(header)]
    community_dump = median(bench, (dataset.key, 'community', 'dump'))
    community_restore = median(bench, (dataset.key, 'community', 'restore'))
    for contender, operation, text in ROWS:
        values = bench.samples.get((dataset.key, contender, operation))
        if not values:
            continue
        value = statistics.median(values)
        raw = median(bench, (dataset.key, 'raw', RAW_OF[operation]))
        community = community_dump if operation == 'dump' else community_restore
        sizes = bench.sizes.get((dataset.key, contender, operation), [])
        lines.append('%-21s %-34s %8.2f %12s %8s %7s %7s %8s' % (
            NAMES[contender], text, value, '%.2f-%.2f' % (min(values), max(values)),
            '%.1f' % (statistics.median(sizes) / MB) if sizes else '', '%+.2f' % (value - raw) if raw else '',
            '%.2f' % (value / raw) if raw else '', '%.2f' % (value / community) if community else ''))
    return lines


def targets(bench, datasets):
    """(line, passed) for each target of the issue. Each target is the median of the ratios
    of one round: the two contenders of a ratio ran minutes apart at most, so a burst of other
    work on the machine moves one round's ratio, not the verdict."""
    def paired(first, second):
        ratios = [one / two for one, two in zip(bench.samples[first], bench.samples[second])]
        return statistics.median(ratios), ' '.join('%.2f' % ratio for ratio in ratios)

    checks = []
    for dataset in datasets:
        for ours, theirs, what in (('dump', 'dump', 'dump'), ('restore-latest j1', 'restore', 'restore-latest')):
            mine, other = (dataset.key, 'ours', ours), (dataset.key, 'community', theirs)
            ratio, rounds = paired(mine, other)
            checks.append(('%s: our %s / community.postgresql\'s = %.2f (rounds %s; medians %.2f s / '
                           '%.2f s), target <= %.2f' % (dataset.key, what, ratio, rounds, median(bench, mine),
                                                        median(bench, other), NOISE), ratio <= NOISE))
        if dataset.key == 'multi':
            one, two = (dataset.key, 'ours', 'restore-latest j1'), (dataset.key, 'ours', 'restore-latest j2')
            speedup, rounds = paired(one, two)
            raw_speedup, raw_rounds = paired((dataset.key, 'raw', 'restore -j1'), (dataset.key, 'raw', 'restore -j2'))
            checks.append(('%s: our restore jobs=1 / jobs=2 = %.2fx (rounds %s; medians %.2f s / %.2f s), raw '
                           'pg_restore -j1 / -j2 = %.2fx (rounds %s): ours / raw\'s = %.2f, target >= %.2f'
                           % (dataset.key, speedup, rounds, median(bench, one), median(bench, two),
                              raw_speedup, raw_rounds, speedup / raw_speedup, PARALLEL_OF_RAW),
                           speedup >= PARALLEL_OF_RAW * raw_speedup))
    return checks


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as handle:
            for line in handle:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024 ** 3
    except (ValueError, OSError):
        memory = 0
    system = platform.platform()
    try:
        with open('/etc/debian_version', encoding='utf-8') as handle:
            system = 'Debian %s, Linux %s' % (handle.read().strip(), platform.release())
    except OSError:
        pass
    return '%s; %d CPUs (%s); %.0f GB RAM' % (system, os.cpu_count() or 0, cpu, memory)


def versions(cluster):
    ansible = run([ansible_playbook(), '--version']).stdout.split('\n')[0].strip()
    community = '?'
    manifests = glob.glob(os.path.join(os.path.dirname(os.path.dirname(shutil.which('ansible-playbook')
                                                                       or sys.executable)),
                                       'lib', 'python*', 'site-packages', 'ansible_collections',
                                       'community', 'postgresql', 'MANIFEST.json'))
    if manifests:
        with open(manifests[0], encoding='utf-8') as handle:
            community = json.load(handle)['collection_info']['version']
    return 'PostgreSQL %s (%s), %s, community.postgresql %s' % (
        cluster.version(), ', '.join(cluster.settings), ansible.replace('[', '').replace(']', ''), community)


# ---- main ------------------------------------------------------------------------------------

def terminate(signum, frame):
    raise KeyboardInterrupt()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=5, help='rounds per dataset (the median is reported)')
    parser.add_argument('--scale', type=int, default=30, help='pgbench scale (100,000 accounts each)')
    parser.add_argument('--tables', type=int, default=6, help='tables of the multi-table dataset')
    parser.add_argument('--rows', type=int, default=300000, help='rows per table of the multi-table dataset')
    parser.add_argument('--budget', type=int, default=1200,
                        help='seconds after which the bench stops, whatever it is doing')
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.scale < 1 or args.tables < 1 or args.rows < 1:
        parser.error('--rounds, --scale, --tables and --rows must be at least 1')
    global DEADLINE
    DEADLINE = Deadline(args.budget)
    signal.signal(signal.SIGTERM, terminate)
    if COLLECTION.parts[-3:] != ('ansible_collections', 'weblab', 'stack'):
        print('bench/backup: run me from the mirrored collection (make bench), not from %s' % COLLECTION,
              file=sys.stderr)
        return 2
    began = time.monotonic()
    load_before = os.getloadavg()

    def progress(text):
        print('[%4.0f s] %s' % (time.monotonic() - began, text), file=sys.stderr, flush=True)

    try:
        cluster = Cluster()
    except ClusterError as exc:
        print('bench/backup: %s' % exc, file=sys.stderr)
        return 3
    work = pathlib.Path(tempfile.mkdtemp(prefix='weblab-bench-dumps-', dir='/tmp'))
    try:
        progress('starting PostgreSQL on 127.0.0.1:%d' % cluster.port)
        cluster.start()
        bench = Bench(cluster, work)
        progress('building the pgbench dataset (scale %d)' % args.scale)
        datasets = [build_pgbench(cluster, args.scale)]
        progress('building the multi-table dataset (%d x %d rows)' % (args.tables, args.rows))
        datasets.append(build_multi(cluster, args.tables, args.rows))
        for number in range(args.rounds):
            progress('ansible-playbook start-up %d/%d' % (number + 1, args.rounds))
            bench.startup()
        for dataset in datasets:
            bench_dataset(bench, dataset, args.rounds, progress)
        header = versions(cluster)
    except (BenchError, ClusterError) as exc:
        print('bench/backup: %s' % exc, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print('bench/backup: interrupted; the cluster and the dumps are removed', file=sys.stderr)
        return 130
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    out = ['bench/backup, %s UTC, %.0f s in all' % (
        datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M'), time.monotonic() - began),
        'machine: ' + machine(), 'software: ' + header,
        'load average (1, 5, 15 min) before the run: %s, after: %s; other work on the machine shows here'
        % (' '.join('%.2f' % value for value in load_before), ' '.join('%.2f' % value for value in os.getloadavg())),
        'ansible-playbook start-up (one ansible.builtin.ping task), median of %d: %.2f s' % (
            args.rounds, median(bench, ('-', 'ansible', 'ping'))), '']
    for dataset in datasets:
        out += table(bench, dataset) + ['']
    out.append('targets (median of the per-round ratios; %.2f allows for noise):' % NOISE)
    checks = targets(bench, datasets)
    out += ['%s  %s' % ('PASS' if passed else 'FAIL', line) for line, passed in checks]
    print('\n'.join(out))
    return 0 if all(passed for dummy, passed in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
