"""Fixtures of the module tests."""

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.weblab.stack.tests.unit.plugins.module_utils import test_pg_backup_core as fakes


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The programs found on PATH are stand-ins; run_command plays them and records the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
        (bin_dir / name).write_text("#!/bin/false\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    server = fakes.FakePostgres()
    server.run_command_kwargs = []

    def run_command(self, args, **kwargs):
        assert isinstance(args, list), "argv lists only, never a shell string"
        assert not kwargs.get("use_unsafe_shell")
        server.run_command_kwargs.append(kwargs)
        return server(args, kwargs.get("environ_update") or {})

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return server
