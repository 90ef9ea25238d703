"""What tools/train.py and tools/test.py do: command-line options -> config -> Runner."""
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction for the tools)
from mmengine.runner import Runner

import mmbeit  # noqa: F401  (compatibility fixes before any OpenMMLab import)
from mmbeit.utils.config_check import (check_data_roots, check_top_level_keys,
                                       suggest_registered_names)


def _scope(cfg: Config) -> str:
    return cfg.get('default_scope') or 'mmpretrain'


def build_runner_cfg(config: str,
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None,
                     launcher: str = 'none',
                     amp: bool = False,
                     resume: Optional[str] = None,
                     no_validate: bool = False,
                     auto_scale_lr: bool = False,
                     checkpoint: Optional[str] = None,
                     out: Optional[str] = None,
                     show_dir: Optional[str] = None,
                     tta: bool = False,
                     tensorboard: bool = False) -> Config:
    """Load ``config`` and apply the tools' command-line options to it."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_top_level_keys(cfg)  # a misspelled key (train_dataloder) would be ignored
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    if no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    if tensorboard:  # next to the config's backends (scalars.json stays)
        backends = list(cfg.visualizer.get('vis_backends') or [])
        if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
            cfg.visualizer.vis_backends = backends + [dict(type='TensorboardVisBackend')]
    if checkpoint is not None:
        # hub ids (owner/name, hf-hub:...) and huggingface.co files come through the hub cache
        from .builder import resolve_weights
        cfg.load_from = resolve_weights(checkpoint)
    if tta and show_dir is not None and _scope(cfg) == 'mmpretrain':
        raise ValueError('--show-dir and --tta cannot be combined for classification '
                         "(mmpretrain's VisualizationHook draws single-view inputs); run them "
                         'one at a time')
    if out is not None and not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {out}: predictions are dumped as a pickle (.pkl); the metrics '
                         f'are written to <work_dir>/test_metrics.json')
    _pad_segmentation_inputs(cfg)
    if tta:
        _apply_tta(cfg)
    if out is not None:
        dump = dict(type='mmengine.DumpResults', out_file_path=out)
        ev = cfg.test_evaluator
        cfg.test_evaluator = (list(ev) if isinstance(ev, (list, tuple)) else [ev]) + [dump]
    if show_dir is not None:
        _apply_show_dir(cfg, show_dir)
    return cfg


def _pad_segmentation_inputs(cfg: Config) -> None:
    """A BEiT segmentor without test-time padding pads its inputs to the patch size.

    mmseg pads test images only by ``model.data_preprocessor.test_cfg`` (``size`` or
    ``size_divisor``); without it, a test image that the pipeline resizes to a side that is
    not a multiple of the patch size (a panorama under the 640 short-edge rescale) stops the
    test. The padding is cropped off the prediction, as ``inference_model`` does.
    """
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    dp = model.get('data_preprocessor')
    if _scope(cfg) != 'mmseg' or 'BEiT' not in str(backbone.get('type', '')) or dp is None:
        return
    pads = dp.get('test_cfg') or {}
    if not (pads.get('size') or pads.get('size_divisor')):
        dp['test_cfg'] = dict(size_divisor=int(backbone.get('patch_size', 16)))


def _apply_tta(cfg: Config) -> None:
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        if _scope(cfg) != 'mmpretrain':
            raise ValueError('--tta needs tta_model and tta_pipeline in the config')
        cfg.setdefault('tta_model', dict(type='mmpretrain.AverageClsScoreTTA'))
        if 'tta_pipeline' not in cfg:
            test_pipeline = cfg.test_dataloader.dataset.pipeline
            cfg.tta_pipeline = test_pipeline[:-1] + [
                dict(
                    type='TestTimeAug',
                    transforms=[[
                        dict(type='RandomFlip', prob=1.),
                        dict(type='RandomFlip', prob=0.)
                    ], [test_pipeline[-1]]])
            ]
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def _apply_show_dir(cfg: Config, show_dir: str) -> None:
    hooks = cfg.setdefault('default_hooks', {})
    if _scope(cfg) == 'mmseg':
        hooks['visualization'] = dict(type='SegVisualizationHook', draw=True, interval=1)
        cfg.visualizer['save_dir'] = show_dir
        cfg.visualizer['vis_backends'] = [dict(type='LocalVisBackend')]
    else:
        # every test image, drawn in RGB with its predicted class and score (mmpretrain's
        # VisualizationHook draws the BGR input as RGB, with 2 pt text on small images)
        hooks['visualization'] = dict(type='VisualizationHook', enable=False)
        cfg.setdefault('custom_hooks', [])
        cfg.custom_hooks = [
            h for h in cfg.custom_hooks if h.get('type') != 'mmbeit.ClsVisualizationHook'
        ] + [dict(type='mmbeit.ClsVisualizationHook', interval=1, out_dir=show_dir)]


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def make_runner(cfg: Config, loaders=LOADERS) -> Runner:
    """Build mmbeit's Runner (loads any BEiT checkpoint format through ``load_from``).

    A config with ``runner_type='FlexibleRunner'`` (FSDP / DeepSpeed ``strategy``)
    gets mmengine's FlexibleRunner, whose ``load_from`` takes mmbeit / mmengine
    checkpoints only (convert others with tools/model_converters first).
    Missing data roots and unknown config types fail here with errors that name
    the key, the path or the closest registered names.
    """
    from mmbeit.engine.runner import BEiTRunner
    from mmbeit.utils.distributed import prepare_cpu_distributed
    check_data_roots(cfg, loaders)
    with suggest_registered_names(_scope(cfg)):
        if cfg.get('runner_type') == 'FlexibleRunner':
            from mmengine.runner import FlexibleRunner
            return FlexibleRunner.from_cfg(cfg)
        # torchrun without GPUs: a gloo process group and DDP without device ids
        prepare_cpu_distributed(cfg)
        return BEiTRunner.from_cfg(cfg)


def train(cfg: Config) -> None:
    """Build the Runner and train (lazily built parts also get close-name suggestions)."""
    with suggest_registered_names(_scope(cfg)):
        make_runner(cfg, loaders=('train_dataloader', 'val_dataloader')).train()


#: config keys that only training reads; testing drops them (see :func:`without_training`)
TRAIN_ONLY = ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler')


def without_training(cfg: Config) -> Config:
    """``cfg`` without its training parts, so testing needs only the test data.

    mmengine builds the train loop (and its dataloader, which lists the training
    folder) whenever something asks for ``runner.iter`` or ``runner.epoch``, as mmseg's
    ``SegVisualizationHook`` does for every image; without a train loop they are 0.
    """
    for key in TRAIN_ONLY:
        if key in cfg:
            cfg[key] = None
    return cfg


def test(cfg: Config) -> dict:
    """Build the Runner and test (training parts dropped: only the test data is read);
    returns the metrics."""
    with suggest_registered_names(_scope(cfg)):
        return make_runner(without_training(cfg), loaders=('test_dataloader', )).test()
