"""Shared test setup: import mmbeit first (compatibility fixes), keep torch to few threads,
and the session fixtures that several modules share.

Tiers (markers registered in setup.cfg, see docs/testing.md): ``slow`` (trains, builds
base-size models, or runs tools end to end: over ~5 s on 2 busy cores), ``export`` (ONNX /
torch.export and onnxruntime), ``subprocess`` (child processes: tools, fresh interpreters,
distributed or data-loader workers). The fast tier is ``-m "not slow and not export and not
subprocess"``; CI (scripts/test.sh) runs everything. Whole modules carry a ``pytestmark``;
single tests are listed in :data:`TIERS` (a full run fails when an entry names no test).

Fixtures:

* ``shared_sample_data``: mmbeit's sample dataset, small (2 training and 2 validation images per
  class, 2 + 1 segmentation images), generated once per session. Read it, never write
  to it: a test that changes files or needs other counts generates its own.
* ``beit_config``: a factory of tiny transformers ``BeitConfig`` (64 channels, 4 layers,
  4 heads, 32-pixel images of 16-pixel patches, per-layer relative position bias, mean
  pooling, layer scale 0.1); keyword arguments override or add fields.
"""
import os
import os.path as osp
from typing import Callable, Dict, Tuple

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

#: tests (``file::function``: every parametrization; ``file::function[id]``: one) -> their
#: tiers, beside the modules that carry a ``pytestmark`` (test_deployment: export;
#: test_resume, test_wheel: slow, subprocess)
TIERS: Dict[str, Tuple[str, ...]] = {
    'test_archs.py::test_arch[large-rel-per-layer-featmap-first+last]': ('slow', ),
    'test_archs.py::test_arch[large-rel-shared-featmap-first+last]': ('slow', ),
    'test_archs.py::test_arch[large-abs-featmap-first+last]': ('slow', ),
    'test_archs.py::test_arch[large-none-featmap-first+last]': ('slow', ),
    'test_apis.py::test_import_is_lazy': ('subprocess', ),
    'test_apis.py::test_tools_test_with_a_checkpoint_url_served_on_localhost': ('subprocess', ),
    'test_apis.py::test_tools_test_out_show_dir_and_tta_for_classification': ('slow', 'subprocess'),
    'test_benchmark.py::test_every_entry_is_reported_and_mmbeit_runs': ('slow', ),
    'test_benchmark.py::test_compile_entry_compiles_only_mmbeit': ('slow', ),
    'test_benchmark.py::test_mim_step_runs_for_every_implementation': ('slow', ),
    'test_benchmark.py::test_missing_and_broken_peers_are_reported': ('slow', ),
    'test_compat.py::test_mmseg_needs_the_standin_in_a_fresh_interpreter': ('subprocess', ),
    'test_compat.py::test_host_libraries_import_after_mmbeit': ('subprocess', ),
    'test_compat.py::test_standin_and_loaders_wait_for_their_imports': ('slow', 'subprocess'),
    'test_dalle_encoder.py::test_logits_match_openai_real_size': ('slow', ),
    'test_distributed.py::test_two_cpu_processes_hold_the_same_weights': ('slow', 'subprocess'),
    'test_distributed.py::test_fsdp_config_wraps_layers_and_tokenizer_and_trains_a_step':
    ('slow', 'subprocess'),
    'test_distributed.py::test_fsdp_clips_by_the_global_norm_as_ddp': ('slow', 'subprocess'),
    'test_doors.py::test_classifier_door': ('slow', ),
    'test_doors.py::test_segmentor_door': ('slow', ),
    'test_doors.py::test_mismatch_is_refused_naming_format_and_keys': ('slow', ),
    'test_doors.py::test_common_doors_refuse_for_segmentors_too': ('slow', ),
    'test_doors.py::test_mim_train_and_test': ('slow', 'subprocess'),
    'test_hub.py::test_a_fresh_process_reads_the_env_and_works_offline_from_the_cache':
    ('slow', 'subprocess'),
    'test_hub.py::test_tools_test_with_a_hub_id': ('slow', 'subprocess'),
    'test_hub.py::test_22k_hub_id_gives_transformers_logits_and_the_config_labels': ('slow', ),
    'test_hub.py::test_mim_hub_id_gives_transformers_logits': ('slow', ),
    'test_imports.py::test_import_mmbeit_is_light': ('slow', 'subprocess'),
    'test_imports.py::test_mim_head_does_not_import_the_engine': ('slow', 'subprocess'),
    'test_imports.py::test_registry_locations_register_every_component': ('slow', 'subprocess'),
    'test_mask_generator.py::test_dataloader_workers': ('subprocess', ),
    'test_pos_resize.py::test_export_with_symbolic_input_size': ('export', ),
    'test_reliability.py::test_resume_from_a_malicious_checkpoint_is_refused':
    ('slow', 'subprocess'),
    'test_seeds.py::test_seed_001_ade20k_logits_at_a_quarter_and_the_mask': ('slow', ),
    'test_segmentation.py::test_tools_test_reports_miou_and_writes_overlays': ('slow', ),
    'test_segmentation.py::test_inference_segmentor_on_the_trained_tiny_model': ('slow', ),
    'test_inference_inputs.py::test_dynamic_onnx_pads_as_pytorch': ('export', ),
    'test_benchmark.py::test_dtypes_and_threads_in_one_run': ('slow', ),
    'test_benchmark.py::test_static_int8_entries': ('slow', 'export'),
    'test_quantize.py::test_tools_test_dtype': ('slow', ),
    'test_quantize.py::test_static_int8_pt2e_and_onnx': ('export', ),
    'test_vqkd_training.py::test_tiny_vqkd_trains_on_sample_data': ('slow', ),
    'test_load_memory.py::test_loading_holds_no_second_copy_of_the_weights': ('slow', 'subprocess'),
    'test_vqkd.py::test_base_vqkd_matches_mmpretrain': ('slow', ),
    'test_vqkd_quantizer.py::test_ddp_codebook_equals_one_process_on_the_whole_batch':
    ('subprocess', ),
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config, items) -> None:
    """Add the markers of :data:`TIERS`; a run of whole folders checks every entry still names
    a collected test (a renamed test must not drop out of its tier silently)."""
    used = set()
    for item in items:
        base = osp.basename(str(item.fspath))
        for key in {f'{base}::{item.originalname}', f'{base}::{item.name}'}:
            for name in TIERS.get(key, ()):
                item.add_marker(getattr(pytest.mark, name))
                used.add(key)
    if config.args and all(osp.isdir(str(a)) for a in config.args):  # whole folders
        collected = {osp.basename(str(i.fspath)) for i in items}
        stale = [k for k in TIERS if k.split('::')[0] in collected and k not in used]
        if stale:
            raise pytest.UsageError(f'tests/conftest.py TIERS names tests that do not exist: '
                                    f'{stale}; rename or remove the entries')


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Each test starts without mmengine's global default scope and without the visualizers
    that another test's Runner left behind: mmengine hands a Runner an existing visualizer of
    the same name, with that other run's save_dir (so ``--show-dir`` would write elsewhere)."""
    import sys

    from mmengine.registry import DefaultScope
    DefaultScope._instance_dict.clear()
    if 'mmengine.visualization' in sys.modules:
        from mmengine.visualization import Visualizer
        stack = [Visualizer]
        while stack:  # each ManagerMixin class keeps its own instances
            cls = stack.pop()
            cls._instance_dict.clear()
            stack.extend(cls.__subclasses__())
    yield


@pytest.fixture(scope='session')
def shared_sample_data(tmp_path_factory) -> str:
    """Root of a small sample dataset (``imagenet/``, ``ade/``, ``demo/``), made once."""
    from mmbeit.utils.sample_data import generate_sample_data
    root = generate_sample_data(
        str(tmp_path_factory.mktemp('shared_sample_data')),
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
