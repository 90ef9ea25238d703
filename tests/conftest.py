"""Shared test setup: import mmbeit first (compatibility fixes), keep torch to few threads,
and the session fixtures that several modules share.

Tiers (markers registered in setup.cfg, see docs/testing.md): ``slow`` (trains, or builds
base-size models), ``export`` (ONNX export and onnxruntime), ``subprocess`` (runs tools or
workers in child processes). The fast tier is ``-m "not slow and not export and not
subprocess"``; CI (scripts/test.sh) runs everything.

Fixtures:

* ``sample_data``: mmbeit's sample dataset, small (2 training and 2 validation images per
  class, 2 + 1 segmentation images), generated once per session. Read it, never write
  to it: a test that changes files or needs other counts generates its own.
* ``beit_config``: a factory of tiny transformers ``BeitConfig`` (64 channels, 4 layers,
  4 heads, 32-pixel images of 16-pixel patches, per-layer relative position bias, mean
  pooling, layer scale 0.1); keyword arguments override or add fields.
"""
import os
import os.path as osp
from typing import Callable

import pytest
import torch

import mmbeit  # noqa: F401

torch.set_num_threads(int(os.environ.get('MMBEIT_TEST_THREADS', '1')))

TINY_BEIT_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=256,
    image_size=32,
    patch_size=16,
    layer_norm_eps=1e-6,
    use_relative_position_bias=True,
    use_mean_pooling=True,
    layer_scale_init_value=0.1)


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Each test starts without mmengine's global default scope (another test may have set one)."""
    from mmengine.registry import DefaultScope
    DefaultScope._instance_dict.clear()
    yield


@pytest.fixture(scope='session')
def sample_data(tmp_path_factory) -> str:
    """Root of a small sample dataset (``imagenet/``, ``ade/``, ``demo/``), made once."""
    from mmbeit.utils.sample_data import generate_sample_data
    root = generate_sample_data(
        str(tmp_path_factory.mktemp('sample_data')),
        cls_train_per_class=2,
        cls_val_per_class=2,
        seg_train=2,
        seg_val=1)
    assert osp.isfile(osp.join(root, 'demo', 'circle.png'))
    return root


@pytest.fixture(scope='session')
def beit_config() -> Callable[..., 'transformers.BeitConfig']:  # noqa: F821
    """``beit_config(**overrides)`` -> a tiny transformers ``BeitConfig``."""

    def make(**overrides) -> 'transformers.BeitConfig':  # noqa: F821
        from transformers import BeitConfig
        cfg = dict(TINY_BEIT_CONFIG)
        cfg.update(overrides)
        return BeitConfig(**cfg)

    return make
