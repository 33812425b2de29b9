# Copyright: (c) 2026, weblab.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Molecule's `check` step runs the converge playbook with --check and passes whatever it
reports. On a converged host a truthful check mode reports no change, so this callback fails the
run when the scenario's converge playbook, run with --check, reports any changed task, and names
each one. Other playbooks run with --check (tests that want a change reported) are left alone.
"""

from __future__ import annotations

import os
import sys

DOCUMENTATION = """
name: weblab_check_unchanged
type: aggregate
short_description: fail a --check run of converge.yml that reports a change
description:
  - Test-only callback of the weblab.stack Molecule scenarios.
requirements:
  - enabled in callbacks_enabled
"""

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

display = Display()

# Molecule's converge playbook: the one its `check` step runs with --check.
CONVERGE = "converge.yml"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "weblab_check_unchanged"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._enforce = False
        self._changed = []

    def v2_playbook_on_start(self, playbook):
        self._enforce = bool(context.CLIARGS.get("check")) and \
            os.path.basename(playbook._file_name) == CONVERGE

    def _record(self, result):
        if self._enforce and result._result.get("changed", False):
            self._changed.append("%s: %s" % (result._host.get_name(), result._task.get_name()))

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_item_on_ok(self, result):
        self._record(result)

    def v2_playbook_on_stats(self, stats):
        if not self._changed:
            return
        display.error("--check of %s on converged hosts reported %d change(s); a truthful check "
                      "mode reports none:\n  %s" % (CONVERGE, len(self._changed),
                                                    "\n  ".join(sorted(set(self._changed)))))
        # An exception here would only be a warning (the callback manager catches them); the
        # run must fail, so leave with the status of a failed host.
        sys.exit(2)
