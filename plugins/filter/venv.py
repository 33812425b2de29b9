# -*- coding: utf-8 -*-

# Copyright: (c) 2026, weblab.stack maintainers (@weblab)
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The venv key of weblab.stack.app: one venv per content, shared by every release with it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible.errors import AnsibleFilterError

# How the app's dependencies are installed, and what else besides the interpreter decides
# what the venv holds.
INSTALLERS = ('requirements', 'uv', 'package')


def _strings(value, name):
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise AnsibleFilterError('venv_key: %s must be a list of strings, got %r' % (name, value))
    return list(value)


def venv_key(python, install='requirements', checksums=None, packages=None, pip_args=None, uv=''):
    """Return the 16 hex digits that name a venv.

    python: the interpreter's sys.version. install: requirements, uv or package. checksums:
    the sha256 of each file the install reads (the requirements files; uv.lock and
    pyproject.toml; the release's archive for a package, whose code goes into the venv).
    packages, pip_args: app_venv_packages and app_pip_extra_args. uv: the uv requirement used
    for install=uv. A requirements venv keeps the key of earlier versions of the role.
    """
    if not isinstance(python, str) or not python:
        raise AnsibleFilterError('venv_key: python must be the interpreter version, got %r' % (python,))
    if install not in INSTALLERS:
        raise AnsibleFilterError('venv_key: install must be one of %s, got %r' % (', '.join(INSTALLERS), install))
    checksums = _strings(checksums or [], 'checksums')
    if not all(len(item) == 64 for item in checksums):
        raise AnsibleFilterError('venv_key: checksums must be sha256 hex digests, got %r' % (checksums,))
    parts = ([python] + checksums + ['packages'] + _strings(packages or [], 'packages')
             + ['pip'] + _strings(pip_args or [], 'pip_args'))
    if install != 'requirements':
        if not isinstance(uv, str):
            raise AnsibleFilterError('venv_key: uv must be a requirement string, got %r' % (uv,))
        parts = ['install', install] + parts + (['uv', uv] if install == 'uv' else [])
    return hashlib.sha256('\n'.join(parts).encode('utf-8')).hexdigest()[:16]


class FilterModule(object):
    def filters(self):
        return {'venv_key': venv_key}
