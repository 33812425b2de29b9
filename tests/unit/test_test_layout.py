"""The test tree collects as one: `pytest tests/unit tests/integration` works (tests/ has no
__init__.py, so pytest names each test module by its file name alone)."""

import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parents[1]


def test_test_modules_have_unique_file_names():
    seen = collections.defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}
