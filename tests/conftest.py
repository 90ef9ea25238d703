"""Shared test setup: import mmbeit first (compatibility fixes), keep torch to few threads."""
import os

import torch

import mmbeit  # noqa: F401

torch.set_num_threads(int(os.environ.get('MMBEIT_TEST_THREADS', '2')))
