#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_dump
short_description: Make a verified PostgreSQL dump and apply retention
version_added: 0.1.0
description:
  - Dumps one database with C(pg_dump) into O(backup_dir) as
    C(DATABASE-TIME[-LABEL].EXT), where TIME is the UTC time C(%Y%m%dT%H%M%SZ) and EXT is
    C(dump) (custom format), C(dir) (directory format) or C(sql) (plain SQL).
  - C(pg_dump) writes under the hidden name C(.NAME.partial), which is renamed when it is
    complete, so a crash never leaves something that looks like a dump. The dump is then
    verified (C(pg_restore --list) reads its table of contents; a plain dump must start with
    pg_dump's header and end with its footer), and C(NAME.sha256) (C(sha256sum) format; one
    line per file for the directory format) and the metadata C(NAME.json) are written. Only a
    dump with both counts as verified; O(globals) adds C(DATABASE-TIME[-LABEL].globals.sql).
  - Before C(pg_dump) starts, a C(psql) session exports a snapshot, counts the rows of every
    table in it and holds it while C(pg_dump --snapshot) dumps that same snapshot; the counts go
    into the metadata (C(row_counts)), for a test restore to compare with (the backups role's
    C(pg_backup.py test-restore)). Counting reads every table once more.
  - Retention then removes the dumps of the database that O(keep) and O(max_age_days) no
    longer keep, with their checksum, metadata and globals files. Only good dumps count toward
    O(keep); the dumps it counts have their checksums checked, and a damaged one is reported
    and kept. The newest verified dump is never removed. Partial dumps older than the newest
    verified one (left by runs that died) are removed too; unverified dumps (a sidecar file
    missing) are reported and kept unless O(remove_unverified). Dumps of other databases are
    never touched.
  - The time in the name, not the file time, says how old a dump is, so copies keep their age.
  - Every run makes a new dump, so the task always reports a change.
  - The same code runs from the C(weblab.stack.backups) timer as C(python3 pg_backup.py dump).
author:
  - weblab.stack maintainers (@weblab)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - weblab.stack.postgresql_login
attributes:
  check_mode:
    support: full
    details:
      - Reports the name the dump would get and, in RV(removed), what retention would remove
        once it is made. Nothing is written or removed; the server is not contacted.
  diff_mode:
    support: full
    details: Shows the verified dumps of the database before and after.
  platform:
    platforms: posix
options:
  database:
    description:
      - The database to dump.
    type: str
    required: true
  backup_dir:
    description:
      - The directory holding the dumps. It is created with mode C(0700) when missing.
      - Every file written there (the dump, its C(.sha256) and C(.json), the C(.globals.sql)
        with the roles' password hashes) is mode C(0600), a directory dump C(0700), whatever the
        umask the task runs with.
    type: path
    required: true
  format:
    description:
      - V(custom) is compressed, restored selectively and in parallel.
      - V(directory) writes one file per table and is the only format dumped in parallel
        (O(jobs)).
      - V(plain) is a SQL script restored by C(psql); it is never compressed.
    type: str
    choices: [custom, directory, plain]
    default: custom
  jobs:
    description:
      - Parallel C(pg_dump) jobs, with O(format=directory) only. Each job holds one more
        connection.
    type: int
    default: 1
  compress:
    description:
      - The compression, checked against the host's C(pg_dump) version before anything is
        written. V(gzip:LEVEL) (or just a level V(1) to V(9)) works everywhere; V(zstd:LEVEL)
        and V(lz4[:LEVEL]) need pg_dump 16 or later (Debian 12 ships 15) and fail with a clear
        error otherwise. V(0) or V(none) turns compression off. Without it, pg_dump's default
        applies (gzip for custom and directory).
      - Not allowed with O(format=plain), except V(0).
    type: str
  label:
    description:
      - A label added to the name, such as the release a dump was taken before. Letters,
        digits, C(.), C(_), C(+) and C(-), starting with a letter or digit.
      - M(weblab.stack.postgresql_restore) can restore the latest dump with a given label.
    type: str
  globals:
    description:
      - Also write the roles and tablespaces (C(pg_dumpall --globals-only)) beside the dump.
        Needs a superuser.
    type: bool
    default: false
  keep:
    description:
      - Retention by count, at least 1. The O(keep) newest good dumps of the database are kept, good
        meaning verified and still matching their checksums. A damaged dump never counts
        toward O(keep); it is reported in RV(problems) and kept.
      - With O(max_age_days) too, a dump is kept when either rule keeps it. Without both, no
        verified dump is removed.
    type: int
  max_age_days:
    description:
      - Retention by age, at least 1. Verified dumps younger than this many days are kept.
    type: int
  space_check:
    description:
      - Before dumping, refuse (with the figures) when the backup directory's file system has
        less free space than the last dump of the database in this format took, plus 10%. The
        first dump of a database is not checked. V(false) dumps anyway.
    type: bool
    default: true
  remove_unverified:
    description:
      - Also remove the unverified dumps (a sidecar file missing, metadata unreadable or not
        saying verified) and the damaged ones that are older than the newest verified dump.
      - By default they are kept and reported in RV(problems) and as warnings, since one of them
        may still be the only copy that restores. Partial leftovers (C(.NAME.partial)) older
        than the newest verified dump are always removed.
    type: bool
    default: false
notes:
  - Run it as the C(postgres) user (C(become_user=postgres), which needs the C(acl) package on
    the host) to connect through the local socket, or give O(login_host) and the other login
    options.
seealso:
  - module: weblab.stack.postgresql_restore
  - name: pg_dump
    description: The program that makes the dump.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
'''

EXAMPLES = r'''
- name: Dump the lab database before the migrations of a release
  weblab.stack.postgresql_dump:
    database: weblab
    backup_dir: /var/backups/postgresql
    label: "{{ __app_release }}"
  become: true
  become_user: postgres

- name: Dump in parallel, fast compression, keep a week and at least 7 dumps
  weblab.stack.postgresql_dump:
    database: weblab
    backup_dir: /var/backups/postgresql
    format: directory
    jobs: 2
    compress: gzip:1
    globals: true
    keep: 7
    max_age_days: 7
  become: true
  become_user: postgres
  register: __backups_dump

- name: Dump a remote server's database as a password user
  weblab.stack.postgresql_dump:
    database: weblab
    backup_dir: /var/backups/postgresql
    login_host: db.example.org
    login_user: backup
    login_password: "{{ vault_backup_password }}"
  no_log: true
'''

RETURN = r'''
path:
  description: The dump written (in check mode, the name it would get).
  returned: always
  type: str
  sample: /var/backups/postgresql/weblab-20250101T020000Z-3f2a9c1d0b7e.dump
name:
  description: The file name of RV(path).
  returned: always
  type: str
  sample: weblab-20250101T020000Z-3f2a9c1d0b7e.dump
database:
  description: The database dumped.
  returned: always
  type: str
  sample: weblab
backup_dir:
  description: The backup directory, absolute.
  returned: always
  type: str
  sample: /var/backups/postgresql
format:
  description: The dump format.
  returned: always
  type: str
  sample: custom
label:
  description: The label in the name, or null.
  returned: always
  type: str
  sample: 3f2a9c1d0b7e
size:
  description: The size of the dump in bytes (for a directory, of its files); null in check mode.
  returned: always
  type: int
  sample: 1048576
checksum:
  description:
    - The sha256 of the dump (for a directory, of its C(.sha256) listing); null in check mode.
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
duration:
  description: Seconds spent dumping and verifying; null in check mode.
  returned: always
  type: float
  sample: 3.2
globals_path:
  description: The globals file written with O(globals), or null.
  returned: always
  type: str
  sample: /var/backups/postgresql/weblab-20250101T020000Z.globals.sql
metadata:
  description: The content of the C(.json) metadata file written beside the dump; null in check mode.
  returned: always
  type: dict
  sample:
    database: weblab
    file: weblab-20250101T020000Z.dump
    format: custom
    size: 1048576
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    server_version: "15.13 (Debian 15.13-0+deb12u1)"
    pg_dump_version: "15.13"
    started: "2025-01-01T02:00:00Z"
    finished: "2025-01-01T02:00:03Z"
    duration: 3.2
    label: null
    verified: true
    host: db1
    compress: null
    jobs: 1
    globals: null
    row_counts:
      public.lab_experiment: 120
      public.lab_result: 3400
removed:
  description: The dumps and leftovers retention removed (in check mode, would remove).
  returned: always
  type: list
  elements: str
  sample: [/var/backups/postgresql/weblab-20241220T020000Z.dump]
problems:
  description:
    - The dumps retention kept although they do not count toward O(keep) (unverified, or
      damaged, their files no longer matching their checksums), each with the reason. Each is
      also a warning.
  returned: always
  type: list
  elements: dict
  sample:
    - name: weblab-20241220T020000Z.dump
      reason: no metadata file; kept (not counted toward keep)
actions:
  description: One line per change made (in check mode, that a real run would make).
  returned: always
  type: list
  elements: str
  sample: ["dump database weblab (custom format) to /var/backups/postgresql/weblab-20250101T020000Z.dump"]
commands:
  description: The commands run, as shell-quoted lines (they never hold the password).
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/pg_dump --version"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weblab.stack.plugins.module_utils.pg_backup import (
    FORMATS, dump, exit_module, login_argument_spec, module_postgres)


def main():
    argument_spec = dict(
        database=dict(type='str', required=True),
        backup_dir=dict(type='path', required=True),
        format=dict(type='str', default='custom', choices=sorted(FORMATS)),
        jobs=dict(type='int', default=1),
        compress=dict(type='str'),
        label=dict(type='str'),
        globals=dict(type='bool', default=False),
        keep=dict(type='int'),
        max_age_days=dict(type='int'),
        remove_unverified=dict(type='bool', default=False),
        space_check=dict(type='bool', default=True),
    )
    argument_spec.update(login_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    pg = module_postgres(module)
    exit_module(module, pg, lambda: dump(
        pg, params['backup_dir'], params['database'], fmt=params['format'], jobs=params['jobs'],
        compress=params['compress'], label=params['label'], globals_dump=params['globals'], keep=params['keep'],
        max_age_days=params['max_age_days'], remove_unverified=params['remove_unverified'],
        space_check=params['space_check'],
        check_mode=module.check_mode),
        lambda result: result['backup_dir'])


if __name__ == '__main__':
    main()
