# -*- coding: utf-8 -*-

# Copyright: (c) 2025, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How weblab.stack.postgresql_dump and postgresql_restore reach the server.
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - The server's host name or address.
      - Without it the programs connect through the local Unix socket as the user the task
        runs as, so with C(become_user=postgres) peer authentication makes them the
        C(postgres) superuser.
    type: str
  login_port:
    description:
      - The server's port, also for the local socket. Without it libpq's default applies
        (C(PGPORT), else 5432).
    type: int
  login_user:
    description:
      - The PostgreSQL role to connect as. Without it, the user the task runs as.
    type: str
  login_password:
    description:
      - The password of O(login_user). It is passed to each program in the environment
        variable C(PGPASSWORD), never on a command line, and is never logged. Without it,
        libpq may still read C(~/.pgpass).
    type: str
notes:
  - The login role must be a superuser (or hold the privileges the operation needs). The
    programs run with C(--no-password), so a missing password fails at once instead of waiting
    for a prompt.
requirements:
  - The PostgreSQL client programs (C(pg_dump), C(pg_restore), C(psql), C(pg_dumpall)) on the
    host the task runs on, from C(PATH) or C(/usr/lib/postgresql/*/bin).
'''
