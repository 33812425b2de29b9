#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_restore
short_description: Restore a verified PostgreSQL dump by swapping in a new database
version_added: 0.1.0
description:
  - Restores a dump made by M(weblab.stack.postgresql_dump) (or the backups timer) from
    O(backup_dir) into O(database).
  - Before touching any database it checks the dump against its C(.sha256) file and reads its
    table of contents (C(pg_restore --list); for plain SQL, pg_dump's header and footer). A
    dump without a checksum file, or one that is truncated or altered, is refused with an
    error naming the damage, and nothing changes.
  - It then creates the database C(DATABASE_restore_TIME) from C(template0) with the owner,
    encoding, collation, ctype, locale provider (with its ICU or builtin locale and ICU rules)
    and database privileges of O(database) (when it exists), and restores into it. Once the
    restore succeeded, the new database gets the connection limit, the C(ALTER DATABASE ... SET)
    and C(ALTER ROLE ... IN DATABASE ... SET) settings and the comment of O(database), so the
    database swapped in is the one that was there, with the dump's contents. Custom and directory dumps are restored by C(pg_restore --exit-on-error) with
    O(jobs) parallel jobs; plain SQL by C(psql -v ON_ERROR_STOP=1 --single-transaction). So the
    restore stops at the first error.
  - Only when that succeeded is the new database swapped in. O(database) is closed to new
    connections, its sessions are ended, and in one transaction it is renamed to
    C(DATABASE_replaced_TIME) and the new database to O(database). The replaced database is
    kept (and opened again); of the replaced databases of O(database), the O(keep_replaced)
    newest stay and older ones are dropped.
  - When any step fails, the temporary database is dropped and O(database) is left exactly as
    it was.
  - Every run restores, so the task always reports a change.
author:
  - weblab.stack maintainers (@weblab)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - weblab.stack.postgresql_login
attributes:
  check_mode:
    support: full
    details:
      - Chooses and checks the dump (checksum and table of contents, which only read it), looks
        the target database up, and reports in RV(actions) what would be restored where and
        under which name the replaced data would be kept. No database is created or changed.
  diff_mode:
    support: full
    details: Shows whether O(database) existed, the dump it holds after the task and where the
      replaced data is kept.
  platform:
    platforms: posix
options:
  database:
    description:
      - The database to restore, created when it does not exist. With O(dump=latest), also
        whose dumps are looked for (names starting with C(DATABASE-)).
    type: str
    required: true
  backup_dir:
    description:
      - The directory holding the dumps.
    type: path
    required: true
  dump:
    description:
      - The file (or, for the directory format, directory) name of a dump in O(backup_dir), such
        as C(weblab-20250101T020000Z.dump). It needs its C(.sha256) file beside it. A dump made
        from another database (its metadata or its table of contents says so) is refused unless
        O(allow_other_database=true).
      - V(latest) is the newest verified dump of O(database) (by the time in its name), with
        label O(label) when given. Partial dumps, unverified ones, those whose metadata is
        damaged and those that failed a test restore are skipped, and every newer dump skipped is
        reported (RV(passed_over) and a
        warning). When the dump chosen fails its checksum, the task fails instead of
        falling back to an older dump; name that one to restore it.
    type: str
    default: latest
  label:
    description:
      - With O(dump=latest), only dumps with this label are considered, for example the
        release a dump was taken before. Ignored with a named dump.
    type: str
  jobs:
    description:
      - Parallel C(pg_restore) jobs, for the custom and directory formats. Ignored (with a
        warning) for plain SQL.
    type: int
    default: 1
  keep_replaced:
    description:
      - How many of the databases restores replaced (C(DATABASE_replaced_TIME), TIME the UTC
        C(%Y%m%d_%H%M%S)) are kept, this restore's included; older ones are dropped, oldest
        first, and listed in RV(dropped_replaced). V(0) drops the replaced data at once.
      - Each holds a whole copy of the database, so they are bounded. V(true) and V(false), the
        values of earlier versions, mean V(1) and V(0).
      - A replaced database that cannot be dropped (a session is connected to it) is kept and
        named in a warning; the restore itself has succeeded.
    type: raw
    default: 2
  space_check:
    description:
      - Before creating the temporary database, refuse (with the figures) when the file system
        of the server's data directory has less free space than the size of O(database) (what
        the restored copy needs beside it until the swap). Checked when the server runs on this
        host and the login may read its C(data_directory) (a superuser, or a member of
        C(pg_read_all_settings)); a restore into a new database is not checked. V(false) restores
        anyway.
    type: bool
    default: true
  allow_other_database:
    description:
      - Restore a dump made from another database into O(database), for example a copy of the
        production data into a staging database. Without it such a dump is refused before
        anything changes, since restoring the wrong database's dump replaces the data.
    type: bool
    default: false
notes:
  - Sessions connected to O(database) are ended when the databases are swapped.
  - Restoring into a database that does not exist creates it with the server's defaults (the
    login user as owner, template0's encoding and locale); the database-level properties of the
    database the dump came from are then not applied.
  - Roles are not restored. Restore the C(.globals.sql) file written beside the dump with C(psql)
    first when the dump's roles do not exist on the server; otherwise the restore stops at the
    first object owned by a missing role, and nothing changes.
seealso:
  - module: weblab.stack.postgresql_dump
  - name: pg_restore
    description: The program that restores custom and directory dumps.
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
'''

EXAMPLES = r'''
- name: Restore the latest verified dump
  weblab.stack.postgresql_restore:
    database: weblab
    backup_dir: /var/backups/postgresql
    jobs: 2
  become: true
  become_user: postgres
  register: __backups_restore

- name: Restore the dump taken before release 3f2a9c1d0b7e was migrated
  weblab.stack.postgresql_restore:
    database: weblab
    backup_dir: /var/backups/postgresql
    label: 3f2a9c1d0b7e
  become: true
  become_user: postgres

- name: Restore a named dump, dropping the replaced data
  weblab.stack.postgresql_restore:
    database: weblab
    backup_dir: /var/backups/postgresql
    dump: weblab-20250101T020000Z.dump
    keep_replaced: 0
  become: true
  become_user: postgres
'''

RETURN = r'''
dump:
  description: The dump restored (in check mode, that would be restored).
  returned: always
  type: str
  sample: /var/backups/postgresql/weblab-20250101T020000Z.dump
format:
  description: Its format.
  returned: always
  type: str
  sample: custom
checksum:
  description: Its sha256 (for a directory, of its C(.sha256) listing), as checked.
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
database:
  description: The database restored.
  returned: always
  type: str
  sample: weblab
restored_into:
  description: The database that holds the dump after the task (O(database)).
  returned: always
  type: str
  sample: weblab
replaced_by:
  description:
    - The database now holding the data that was replaced, kept until you drop it. Null when
      O(database) did not exist or O(keep_replaced=0).
  returned: always
  type: str
  sample: weblab_replaced_20250102_093000
passed_over:
  description:
    - With O(dump=latest), the dumps newer than the one chosen that it did not take, newest
      first, each with the reason (unfinished, unverified, damaged metadata, failed its test
      restore, another label). Each
      is also a warning, so the newest dump is never skipped silently. Empty for a named dump.
  returned: always
  type: list
  elements: dict
  sample:
    - name: weblab-20250102T020000Z.dump
      reason: no checksum file
dropped_replaced:
  description:
    - The databases earlier restores (or this one, with O(keep_replaced=0)) replaced that were
      dropped to keep O(keep_replaced) of them, oldest first (in check mode, would be dropped).
  returned: always
  type: list
  elements: str
  sample: [weblab_replaced_20250101_093000]
duration:
  description: Seconds spent checking, restoring and swapping; null in check mode.
  returned: always
  type: float
  sample: 12.5
actions:
  description: One line per change made (in check mode, that a real run would make).
  returned: always
  type: list
  elements: str
  sample: ["rename database weblab to weblab_replaced_20250102_093000 and weblab_restore_20250102_093000 to weblab"]
commands:
  description: The commands run, as shell-quoted lines (they never hold the password).
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/pg_restore --list /var/backups/postgresql/weblab-20250101T020000Z.dump"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.weblab.stack.plugins.module_utils.pg_backup import (
    exit_module, login_argument_spec, module_postgres, restore)


def main():
    argument_spec = dict(
        database=dict(type='str', required=True),
        backup_dir=dict(type='path', required=True),
        dump=dict(type='str', default='latest'),
        label=dict(type='str'),
        jobs=dict(type='int', default=1),
        keep_replaced=dict(type='raw', default=2),
        allow_other_database=dict(type='bool', default=False),
        space_check=dict(type='bool', default=True),
    )
    argument_spec.update(login_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    keep = params['keep_replaced']
    if isinstance(keep, bool) or str(keep).lower() in ('true', 'false', 'yes', 'no'):
        keep = 1 if module.boolean(keep) else 0
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        module.fail_json(msg='keep_replaced must be a number of databases, 0 or more: got %r' % (keep,))
    params['keep_replaced'] = keep
    pg = module_postgres(module)
    exit_module(module, pg, lambda: restore(
        pg, params['backup_dir'], params['database'], dump_ref=params['dump'], label=params['label'],
        jobs=params['jobs'], keep_replaced=params['keep_replaced'],
        allow_other_database=params['allow_other_database'], space_check=params['space_check'],
        check_mode=module.check_mode),
        lambda result: 'database %s' % result['database'])


if __name__ == '__main__':
    main()
