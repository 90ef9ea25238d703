"""Shared test setup: import mmbeit first (compatibility fixes), keep torch to few threads."""
import os

import pytest
import torch

import mmbeit  # noqa: F401

torch.set_num_threads(int(os.environ.get('MMBEIT_TEST_THREADS', '1')))


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Each test starts without mmengine's global default scope (another test may have set one)."""
    from mmengine.registry import DefaultScope
    DefaultScope._instance_dict.clear()
    yield
