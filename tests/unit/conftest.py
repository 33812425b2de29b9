"""Shared paths for the unit tests."""

import pathlib

import pytest

COLLECTION_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def collection_root():
    """The collection under test (the synced .build/ansible_collections/weblab/stack tree)."""
    return COLLECTION_ROOT
