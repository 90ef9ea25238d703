"""An mmengine config from a model folder's ``config.json``: no config written by hand.

A transformers folder (``save_pretrained``, or a hub snapshot) says its task by its
``architectures`` (``BeitForImageClassification``, ``BeitForSemanticSegmentation``,
``BeitForMaskedImageModeling``); :func:`mmbeit.converters.transformers.mmbeit_model_cfg`
reads the backbone, the labels and the heads from it, and
``preprocessor_config.json`` (if present) the resize and the normalisation. A timm
hub folder (``config.json`` with ``architecture: beit_base_patch16_224`` and
``pretrained_cfg``) gives a classifier the same way.

The configs built here have what inference needs: the model, its data
preprocessor, a test pipeline, and the class names as the test dataset's metainfo.

========================== ===========================================================
transformers architecture  mmbeit model
========================== ===========================================================
BeitForImageClassification mmpretrain ``ImageClassifier`` + ``mmbeit.BEiT`` + linear head
BeitForSemanticSegmentation mmseg ``EncoderDecoder``: ``mmbeit.BEiT`` -> ``Feature2Pyramid``
                           -> ``UPerHead`` (+ ``FCNHead``); out_indices entry ``i`` is layer
                           ``i - 2``, as transformers reads ``hidden_states[i - 1]``
BeitForMaskedImageModeling ``mmbeit.BEiTPretrain`` (backbone + MIM head); its tokenizer
                           is not in the folder: the format says which
                           (``mmbeit_model_cfg``'s ``tokenizer``), ``init_weights()`` loads
                           it, and it refuses to run until then
========================== ===========================================================

What a folder's files are called and how ``config.json`` reads is the transformers
format module's knowledge (:mod:`mmbeit.converters.transformers`); the timm
architectures are the BEiT backbone's arch table (:data:`mmbeit.models.backbones.beit.ARCH_ZOO`).
"""
import math
import os.path as osp
import re
from typing import Any, Mapping, Optional, Sequence, Tuple

from mmbeit.converters import transformers as hf_format

__all__ = [
    'is_model_folder', 'config_from_folder', 'config_from_transformers', 'config_from_timm',
    'processor_from_config'
]

_TIMM_ARCH = re.compile(r'^beit(?:v2)?_(base|large)_patch(\d+)_(\d+)')


def is_model_folder(path: Any) -> bool:
    """A folder with a ``config.json`` (transformers' or timm's)."""
    return isinstance(path, str) and hf_format.is_model_dir(path)


def config_from_folder(folder: str):
    """The mmengine Config of a transformers or timm model folder.

    Raises:
        ValueError: a config.json that describes no BEiT model mmbeit builds.
    """
    config = hf_format.read_json(osp.join(folder, hf_format.CONFIG_FILE))
    if 'architecture' in config and 'model_type' not in config:
        return config_from_timm(config, source=folder)
    processor = osp.join(folder, hf_format.PROCESSOR_FILE)
    return config_from_transformers(
        config, hf_format.read_json(processor) if osp.isfile(processor) else None, source=folder)


def _size(value: Any, default: Tuple[int, int]) -> Tuple[int, int]:
    """An image processor size (int, [h, w] or {'height', 'width'} / {'shortest_edge'})."""
    if value is None:
        return default
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    if 'height' in value:
        return int(value['height']), int(value['width'])
    if 'shortest_edge' in value:
        return int(value['shortest_edge']), int(value['shortest_edge'])
    return default


def _preprocessing(processor: Optional[Mapping], image_size: Tuple[int, int]) -> dict:
    """Resize / crop / normalisation of a transformers ``BeitImageProcessor`` config.

    Without one: resize to the model's image size (bicubic) and mean = std = 0.5, the
    BEiT models' statistics.
    """
    p = dict(processor or {})
    size = _size(p.get('size'), image_size) if p.get('do_resize', True) else None
    crop = _size(p.get('crop_size'), image_size) if p.get('do_center_crop', False) else None
    interpolation = hf_format.PIL_RESAMPLE.get(p.get('resample', 3), 'bicubic')
    rescale = p.get('rescale_factor', 1 / 255) if p.get('do_rescale', True) else 1.0
    normalize = p.get('do_normalize', True)
    mean = p.get('image_mean', hf_format.BEIT_MEAN) if normalize else [0.] * 3
    std = p.get('image_std', hf_format.BEIT_STD) if normalize else [1 / rescale] * 3
    # x * rescale normalised by (mean, std)  ==  x normalised by (mean / rescale, std / rescale)
    return dict(
        size=size,
        crop=crop,
        interpolation=interpolation,
        mean=[m / rescale for m in mean],
        std=[s / rescale for s in std])


def _resize_steps(pre: dict, seg: bool = False) -> list:
    steps = []
    if pre['size'] is not None:
        h, w = pre['size']
        resize = dict(
            type='Resize',
            scale=(w, h),
            keep_ratio=False,
            backend='pillow',
            interpolation=pre['interpolation'])
        steps.append(resize)
    if pre['crop'] is not None:
        h, w = pre['crop']
        steps.append(dict(type='CenterCrop', crop_size=(w, h)))
    return steps


def _hw(value: Any) -> Tuple[int, int]:
    """An mmcv (w, h) scale or int -> (h, w)."""
    if isinstance(value, int):
        return value, value
    return int(value[1]), int(value[0])


def processor_from_config(cfg: Mapping) -> dict:
    """The image preprocessing of an mmbeit classifier config, for an export's
    ``preprocessor_config.json``: the inverse of what :func:`config_from_transformers` builds.

    Reads the data preprocessor (``model.data_preprocessor``, else the top-level one, as
    mmengine's Runner does; mean/std, 0-255 units, RGB) and the test pipeline
    (``Resize``, ``ResizeEdge``, ``CenterCrop``).

    Returns:
        Keyword arguments of :func:`mmbeit.converters.transformers.image_processor_config`
        (mean/std of [0, 1] pixels); only what the config sets.

    Raises:
        ValueError: settings a ``BeitImageProcessor`` cannot express (BGR input, a
            keep-ratio resize of one side).
    """
    import warnings
    out: dict = {}
    # the Runner's precedence: model.data_preprocessor, else the top-level one
    pre = dict(cfg['model'].get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    if pre.get('mean') is not None:
        if pre.get('std') is None:
            raise ValueError(f'data_preprocessor {pre}: mean without std')
        if not pre.get('to_rgb', False):
            raise ValueError('the config normalises BGR pixels (data_preprocessor.to_rgb is not '
                             'True); transformers\' image processors give the model RGB')
        out['mean'] = [float(m) / 255 for m in pre['mean']]
        out['std'] = [float(s) / 255 for s in pre['std']]
    # what testing runs: the test dataloader's pipeline, else the test_pipeline variable
    pipeline = (cfg.get('test_dataloader') or {}).get(
        'dataset', {}).get('pipeline') or cfg.get('test_pipeline') or []
    for step in pipeline:
        kind = str(step['type']).split('.')[-1]
        if kind == 'Resize':
            if step.get('keep_ratio', False):
                raise ValueError(f'test pipeline {dict(step)}: a keep-ratio resize; '
                                 "transformers' BeitImageProcessor resizes to height x width")
            out['size'] = _hw(step['scale'])
            out['interpolation'] = step.get('interpolation', 'bilinear')
        elif kind == 'ResizeEdge':
            warnings.warn(f'test pipeline {dict(step)}: BeitImageProcessor resizes to a fixed '
                          'height x width; the export resizes to a square of that side, the '
                          'same for square images only')
            out['size'] = _hw(int(step['scale']))
            out['interpolation'] = step.get('interpolation', 'bilinear')
        elif kind == 'CenterCrop':
            out['crop_size'] = _hw(step['crop_size'])
    return out


def _meta(classes: Optional[Tuple[str, ...]]) -> dict:
    return dict(classes=tuple(classes)) if classes else {}


def _classifier_cfg(backbone: dict, num_classes: int, embed_dims: int, mean: Sequence[float],
                    std: Sequence[float], pipeline: list, classes: Optional[Tuple[str, ...]],
                    **extra: Any) -> dict:
    """The config dict of a ``mmbeit.BEiTClassifier`` with a linear head and a test loader."""
    model = dict(
        type='mmbeit.BEiTClassifier',
        backbone=backbone,
        neck=None,
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=embed_dims),
        data_preprocessor=dict(num_classes=num_classes, mean=mean, std=std, to_rgb=True))
    loader = dict(
        batch_size=1,
        num_workers=0,
        dataset=dict(
            type='CustomDataset',
            data_root='',
            with_label=False,
            metainfo=_meta(classes),
            pipeline=pipeline))
    return dict(
        default_scope='mmpretrain',
        model=model,
        test_pipeline=pipeline,
        test_dataloader=loader,
        **extra)


def config_from_transformers(config: Mapping,
                             processor: Optional[Mapping] = None,
                             source: str = hf_format.CONFIG_FILE):
    """The mmengine Config of a transformers BEiT ``config.json`` (and image processor).

    Raises:
        ValueError: not a BEiT model, or a task mmbeit has no model for.
    """
    from mmengine.config import Config

    from .class_names import classes_from_transformers_config
    hf_format.check_model_type(config, source)
    pieces = hf_format.mmbeit_model_cfg(dict(config))
    task = pieces['task']
    backbone = dict(type='mmbeit.BEiT', **pieces['backbone'])
    image_size = backbone['img_size']
    image_size = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size, ) * 2
    pre = _preprocessing(processor, image_size)
    classes = classes_from_transformers_config(config)
    num_classes = pieces.get('num_classes') or (len(classes) if classes else None)
    embed = backbone['arch']['embed_dims']
    common = dict(
        custom_imports=dict(imports=['mmbeit'], allow_failed_imports=False),
        source_config=osp.abspath(source) if osp.exists(source) else source)

    if task == 'classification':
        if not num_classes:
            raise ValueError(f'{source}: a BeitForImageClassification config needs num_labels '
                             'or id2label')
        pipeline = [dict(type='LoadImageFromFile'), *_resize_steps(pre), dict(type='PackInputs')]
        cfg = _classifier_cfg(backbone, num_classes, embed, pre['mean'], pre['std'], pipeline,
                              classes, **common)
    elif task == 'segmentation':
        if not num_classes:
            raise ValueError(f'{source}: a BeitForSemanticSegmentation config needs num_labels '
                             'or id2label')
        norm = dict(type='BN', requires_grad=True)
        ce = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)
        model = dict(
            type='mmbeit.BEiTSegmentor',
            data_preprocessor=dict(
                type='SegDataPreProcessor',
                mean=pre['mean'],
                std=pre['std'],
                bgr_to_rgb=True,
                pad_val=0,
                seg_pad_val=255),
            backbone=backbone,
            neck=dict(
                type='Feature2Pyramid', embed_dim=embed, rescales=[4, 2, 1, 0.5], norm_cfg=norm),
            decode_head=dict(
                type='UPerHead',
                in_channels=[embed] * 4,
                in_index=[0, 1, 2, 3],
                pool_scales=tuple(pieces['pool_scales']),
                channels=pieces['channels'],
                dropout_ratio=0.1,
                num_classes=num_classes,
                norm_cfg=norm,
                align_corners=False,
                loss_decode=ce),
            train_cfg=dict(),
            test_cfg=dict(mode='whole'))
        if pieces['use_auxiliary_head']:
            model['auxiliary_head'] = dict(
                type='FCNHead',
                in_channels=embed,
                in_index=2,
                channels=pieces['auxiliary_channels'],
                num_convs=pieces['auxiliary_num_convs'],
                concat_input=pieces['auxiliary_concat_input'],
                dropout_ratio=0.1,
                num_classes=num_classes,
                norm_cfg=norm,
                align_corners=False,
                loss_decode=dict(ce, loss_weight=0.4))
        pipeline = [
            dict(type='LoadImageFromFile'), *_resize_steps(pre, seg=True),
            dict(type='PackSegInputs')
        ]
        cfg = dict(
            default_scope='mmseg',
            model=model,
            test_pipeline=pipeline,
            test_dataloader=dict(
                batch_size=1,
                num_workers=0,
                dataset=dict(type='BaseSegDataset', metainfo=_meta(classes), pipeline=pipeline)),
            **common)
    elif task == 'mim':
        model = dict(
            type='mmbeit.BEiTPretrain',
            backbone=backbone,
            head=dict(type='mmbeit.BEiTMIMHead'),
            target_generator=dict(pieces['tokenizer']),
            # the second view (the tokenizer's) keeps the preprocessor's defaults
            data_preprocessor=dict(
                type='mmbeit.TwoViewDataPreprocessor',
                mean=pre['mean'],
                std=pre['std'],
                to_rgb=True))
        pipeline = [dict(type='LoadImageFromFile'), *_resize_steps(pre), dict(type='PackInputs')]
        cfg = dict(default_scope='mmpretrain', model=model, test_pipeline=pipeline, **common)
    else:
        raise ValueError(f'{source}: architectures {config.get("architectures")} is a bare '
                         'BeitModel; mmbeit builds BeitForImageClassification, '
                         'BeitForSemanticSegmentation and BeitForMaskedImageModeling folders '
                         '(load a bare backbone into a config of yours with pretrained=)')
    return Config(cfg)


def config_from_timm(config: Mapping, source: str = hf_format.CONFIG_FILE):
    """The mmengine Config of a timm hub ``config.json`` (``beit_*`` / ``beitv2_*``).

    Raises:
        ValueError: an architecture that is not a timm BEiT.
    """
    from mmengine.config import Config

    from mmbeit.models.backbones.beit import resolve_arch
    name = str(config.get('architecture', ''))
    m = _TIMM_ARCH.match(name)
    if not m:
        raise ValueError(f'{source}: timm architecture {name!r} is not a BEiT '
                         "(beit_{base,large}_patch16_{224,384,512}, beitv2_*)")
    size, patch, img = m.group(1), int(m.group(2)), int(m.group(3))
    args = dict(config.get('model_args') or {})
    zoo = resolve_arch(size)  # the named size's dims, which model_args may override
    arch = dict(zoo)
    for ours, theirs in (('embed_dims', 'embed_dim'), ('num_layers', 'depth'), ('num_heads',
                                                                                'num_heads')):
        arch[ours] = args.get(theirs, arch[ours])
    arch['feedforward_channels'] = int(
        arch['embed_dims'] * args.get('mlp_ratio', zoo['feedforward_channels'] / zoo['embed_dims']))
    pretrained = dict(config.get('pretrained_cfg') or {})
    input_size = pretrained.get('input_size') or [3, img, img]
    img_size = args.get('img_size', input_size[-1])
    pool = args.get('global_pool', config.get('global_pool', 'avg'))
    backbone = dict(
        type='mmbeit.BEiT',
        arch=arch,
        img_size=img_size,
        patch_size=args.get('patch_size', patch),
        in_channels=args.get('in_chans', input_size[0]),
        out_type='avg_featmap' if pool == 'avg' else 'cls_token',
        final_norm=pool != 'avg',
        layer_scale_init_value=args.get('init_values', 0.1) or 0.,
        use_abs_pos_emb=args.get('use_abs_pos_emb', False),
        use_rel_pos_bias=args.get('use_rel_pos_bias', True),
        use_shared_rel_pos_bias=args.get('use_shared_rel_pos_bias', False),
        norm_eps=1e-6)
    num_classes = config.get('num_classes', pretrained.get('num_classes', 1000))
    mean = [v * 255 for v in pretrained.get('mean', (0.5, 0.5, 0.5))]
    std = [v * 255 for v in pretrained.get('std', (0.5, 0.5, 0.5))]
    crop_pct = pretrained.get('crop_pct', 0.9)
    crop = input_size[-1]
    pipeline = [
        dict(type='LoadImageFromFile'),
        # timm's eval transform: short side to floor(size / crop_pct), centre crop
        dict(
            type='ResizeEdge',
            scale=int(math.floor(crop / crop_pct)),
            edge='short',
            backend='pillow',
            interpolation=pretrained.get('interpolation', 'bicubic')),
        dict(type='CenterCrop', crop_size=crop),
        dict(type='PackInputs')
    ]
    from .class_names import classes_from_transformers_config
    classes = classes_from_transformers_config(config)
    return Config(
        _classifier_cfg(
            backbone,
            num_classes,
            arch['embed_dims'],
            mean,
            std,
            pipeline,
            classes,
            custom_imports=dict(imports=['mmbeit'], allow_failed_imports=False),
            source_config=source))
