"""Run a module's main() in-process as Ansible runs it (module arguments, check and diff mode)
and return its JSON result, failed results included."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args


def run_main(main, capsys, args, check=False, diff=False):
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
        with pytest.raises(SystemExit) as exited:
            main()
    result = json.loads(capsys.readouterr().out)
    assert (exited.value.code != 0) == bool(result.get("failed")), result
    return result
