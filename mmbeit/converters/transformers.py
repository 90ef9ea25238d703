"""Hugging Face transformers BEiT and Data2Vec-vision checkpoints: everything mmbeit knows of them.

On disk (``save_pretrained``; the Hub's ``microsoft/beit-*`` models) transformers
keeps its original names, under ``beit.`` in the task models::

    beit.embeddings.{cls_token,mask_token,position_embeddings},
    beit.embeddings.patch_embeddings.projection,
    beit.encoder.relative_position_bias.relative_position_bias_table (shared),
    beit.encoder.layer.{i}.layernorm_before / layernorm_after,
    beit.encoder.layer.{i}.attention.attention.{query,key,value} (separate; key has no bias),
    beit.encoder.layer.{i}.attention.attention.relative_position_bias.relative_position_bias_table,
    beit.encoder.layer.{i}.attention.output.dense, .intermediate.dense, .output.dense,
    beit.encoder.layer.{i}.lambda_1 / lambda_2, beit.layernorm,
    beit.pooler.layernorm (mean pooling),
    classifier (BeitForImageClassification), layernorm + lm_head (BeitForMaskedImageModeling),
    fpn1.{0,1,3}, fpn2.0, decode_head.*, auxiliary_head.* (BeitForSemanticSegmentation)

transformers 5 renames these in memory (``beit.layers.{i}.attention.q_proj``,
``beit.shared_position_bias``, ``fpn.fpn1.conv_transpose1``,
``decode_head.psp_modules.blocks.{j}.conv.convolution``, ...); a ``state_dict()``
saved with ``torch.save`` has those names, and both are read here.

Data2Vec-vision (``Data2VecVisionModel`` / ``...ForImageClassification`` /
``...ForSemanticSegmentation``, ``model_type`` ``'data2vec-vision'``) is the same
architecture with the same module names under ``data2vec_vision.``.

This module holds the format's whole knowledge:

* detection and conversion (:func:`matches`, :func:`convert`, :data:`BACKBONE_RULES`,
  :data:`HEAD_RULES`);
* its reading quirk, the model folder (:data:`CONFIG_FILE`, :data:`WEIGHT_FILES`,
  :data:`INDEX_FILES`, :func:`read`, :func:`read_model_dir`), and the files a Hub
  repository holds (:data:`HUB_WEIGHT_FILES`, :data:`PROCESSOR_FILE`);
* what ``config.json`` says as mmbeit config pieces (:func:`mmbeit_model_cfg`);
* the export (:func:`export`, :func:`write_model_dir`): mmbeit's canonical layout to the
  names transformers writes on disk, so any transformers version loads the result with
  ``BeitFor*.from_pretrained``; :mod:`.export` runs it on any checkpoint.
"""
import json
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .layout import MIM_HEAD_LINEAR
from .rules import Rule, StateDict, apply_rules, fuse_qkv, prefix_rules, split_qkv

__all__ = [
    'NAME', 'DESCRIPTION', 'PRIORITY', 'TASKS', 'ARCHITECTURES', 'TASK_OF_ARCHITECTURE',
    'MODEL_TYPES', 'CONFIG_FILE', 'PROCESSOR_FILE', 'WEIGHT_FILES', 'INDEX_FILES',
    'HUB_WEIGHT_FILES', 'BACKBONE_RULES', 'HEAD_RULES', 'matches', 'convert', 'read',
    'is_model_dir', 'read_model_dir', 'check_model_type', 'mmbeit_model_cfg',
    'hf_out_index_to_layer', 'layer_to_hf_out_index', 'export', 'write_model_dir'
]

NAME = 'transformers'
DESCRIPTION = ('Hugging Face BeitModel / BeitFor* (beit.encoder.layer.0.attention.attention.'
               'query...) or Data2VecVision* (data2vec_vision.*), .bin, .safetensors or a model '
               'folder')
# detection order (lowest first): its names are the most specific of all formats
PRIORITY = 10

TASKS = ('classification', 'mim', 'segmentation')
#: task -> the BEiT task model (what the export writes)
ARCHITECTURES = {
    'classification': 'BeitForImageClassification',
    'mim': 'BeitForMaskedImageModeling',
    'segmentation': 'BeitForSemanticSegmentation',
}
#: ``config.json`` ``architectures`` -> task, for every model mmbeit reads
TASK_OF_ARCHITECTURE = {
    **{
        arch: task
        for task, arch in ARCHITECTURES.items()
    },
    'Data2VecVisionForImageClassification': 'classification',
    'Data2VecVisionForSemanticSegmentation': 'segmentation',
}
#: ``config.json`` ``model_type`` -> the base model's prefix in the task models
MODEL_TYPES = {'beit': 'beit.', 'data2vec-vision': 'data2vec_vision.'}

# ------------------------------------------------------------------ the model folder
#: a folder as ``save_pretrained`` writes it (and a Hub snapshot)
CONFIG_FILE = 'config.json'
#: the image processor's settings (resize, crop, mean/std) beside ``config.json``
PROCESSOR_FILE = 'preprocessor_config.json'
#: the weights, in the order transformers looks for them
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
#: sharded weights: an index naming the shards, one per weight file
INDEX_FILES = tuple(name + '.index.json' for name in WEIGHT_FILES)
#: what a Hub repository may hold for the weights, in the order to try
HUB_WEIGHT_FILES = tuple(name for pair in zip(WEIGHT_FILES, INDEX_FILES) for name in pair)

_L = r'(?:encoder\.layer|layers)\.(\d+)\.'  # on-disk or transformers-5 layer prefix

# BeitModel keys (no ``beit.`` prefix) -> mmbeit BEiT keys; q/k/v go to ``attn._q``... for fuse_qkv
BACKBONE_RULES: List[Rule] = [
    (r'embeddings\.(cls_token|mask_token)', r'\1'),
    (r'embeddings\.position_embeddings', 'pos_embed'),
    (r'embeddings\.patch_embeddings\.projection\.(weight|bias)', r'patch_embed.proj.\1'),
    (r'(?:encoder\.relative_position_bias|shared_position_bias)\.relative_position_bias_table',
     'rel_pos_bias.table'),
    (r'.*relative_position_index', None),  # buffers of older transformers versions
    (_L + r'layernorm_before\.(weight|bias)', r'layers.\1.norm1.\2'),
    (_L + r'layernorm_after\.(weight|bias)', r'layers.\1.norm2.\2'),
    (_L + r'attention\.(?:attention\.query|q_proj)\.(weight|bias)', r'layers.\1.attn._q.\2'),
    (_L + r'attention\.(?:attention\.key|k_proj)\.(weight|bias)', r'layers.\1.attn._k.\2'),
    (_L + r'attention\.(?:attention\.value|v_proj)\.(weight|bias)', r'layers.\1.attn._v.\2'),
    (_L + r'(?:attention\.attention\.relative_position_bias|relative_position_bias)'
     r'\.relative_position_bias_table', r'layers.\1.attn.rel_pos_bias.table'),
    (_L + r'attention\.(?:output\.dense|o_proj)\.(weight|bias)', r'layers.\1.attn.proj.\2'),
    (_L + r'(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)', r'layers.\1.mlp.fc1.\2'),
    (_L + r'(?:output\.dense|mlp\.fc2)\.(weight|bias)', r'layers.\1.mlp.fc2.\2'),
    (_L + r'lambda_([12])', r'layers.\1.gamma\2'),
    (r'layernorm\.(weight|bias)', r'norm.\1'),
    (r'pooler\.layernorm\.(weight|bias)', r'fc_norm.\1'),
]

# task-model keys outside ``beit.``
HEAD_RULES: List[Rule] = [
    (r'classifier\.(weight|bias)', r'cls_head.fc.\1'),
    (r'layernorm\.(weight|bias)', r'backbone.norm.\1'),  # BeitForMaskedImageModeling's final norm
    (r'lm_head\.(weight|bias)', rf'mim_head.{MIM_HEAD_LINEAR}.\1'),
    # the FPN neck -> mmseg Feature2Pyramid
    (r'(?:fpn1\.0|fpn\.fpn1\.conv_transpose1)\.(.+)', r'neck.upsample_4x.0.\1'),
    (r'(?:fpn1\.1|fpn\.fpn1\.normalization)\.(.+)', r'neck.upsample_4x.1.\1'),
    (r'(?:fpn1\.3|fpn\.fpn1\.conv_transpose2)\.(.+)', r'neck.upsample_4x.3.\1'),
    (r'(?:fpn2\.0|fpn\.fpn2)\.(weight|bias)', r'neck.upsample_2x.0.\1'),
    # UperHead / FCNHead -> mmseg's names (on-disk names are mmseg's but for the classifier)
    (r'(decode_head|auxiliary_head)\.classifier\.(weight|bias)', r'\1.conv_seg.\2'),
    (r'decode_head\.psp_modules\.blocks\.(\d+)\.conv\.convolution\.(.+)',
     r'decode_head.psp_modules.\1.1.conv.\2'),
    (r'decode_head\.psp_modules\.blocks\.(\d+)\.conv\.normalization\.(.+)',
     r'decode_head.psp_modules.\1.1.bn.\2'),
    (r'decode_head\.psp_bottleneck\.convolution\.(.+)', r'decode_head.bottleneck.conv.\1'),
    (r'decode_head\.psp_bottleneck\.normalization\.(.+)', r'decode_head.bottleneck.bn.\1'),
    (r'((?:decode_head|auxiliary_head)\..+)\.convolution\.(weight|bias)', r'\1.conv.\2'),
    (r'((?:decode_head|auxiliary_head)\..+)\.normalization\.(.+)', r'\1.bn.\2'),
    (r'(decode_head|auxiliary_head)\.(.+)', r'\1.\2'),
]


def is_transformers_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any('embeddings.patch_embeddings.projection' in k or 'attention.attention.query' in k
               or re.search(r'layers\.\d+\.attention\.q_proj\.', k) for k in state_dict)


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    return is_transformers_layout(state_dict)


def convert(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """transformers state dict (BeitModel, Data2VecVisionModel or one of their task models)
    -> mmbeit's canonical layout."""
    base = next((p for p in MODEL_TYPES.values() if any(k.startswith(p) for k in state_dict)), '')
    rules = prefix_rules(BACKBONE_RULES, base, 'backbone.') + HEAD_RULES  # '': a bare BeitModel
    return fuse_qkv(apply_rules(state_dict, rules, NAME), NAME)


def is_model_dir(path: Any) -> bool:
    """A folder as ``save_pretrained`` writes it: :data:`CONFIG_FILE` and weights."""
    return (isinstance(path, (str, os.PathLike)) and osp.isdir(path)
            and osp.isfile(osp.join(path, CONFIG_FILE)))


def read_json(path: str) -> dict:
    """A parsed JSON object (``config.json``, ``preprocessor_config.json``)."""
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a JSON object, got {type(data).__name__}')
    return data


def check_model_type(config: Mapping[str, Any], source: str = CONFIG_FILE) -> str:
    """``config.json``'s ``model_type`` (``'beit'`` when absent), if mmbeit reads it."""
    model_type = config.get('model_type', 'beit')
    if model_type not in MODEL_TYPES:
        raise ValueError(f'{source}: model_type is {model_type!r}; mmbeit reads '
                         f'{" and ".join(repr(t) for t in MODEL_TYPES)} models only')
    return model_type


def read_model_dir(path: str, map_location: str = 'cpu') -> Tuple[StateDict, dict]:
    """Read a transformers model folder safely (sharded ones too).

    Returns:
        (state dict in transformers' names, the parsed config.json)
    """
    from mmbeit.utils.checkpoint_io import load_checkpoint_file
    config = read_json(osp.join(path, CONFIG_FILE))
    check_model_type(config, osp.join(path, CONFIG_FILE))
    files = [osp.join(path, n) for n in WEIGHT_FILES if osp.isfile(osp.join(path, n))][:1]
    for index in INDEX_FILES:
        if not files and osp.isfile(osp.join(path, index)):
            weight_map = read_json(osp.join(path, index)).get('weight_map')
            if not isinstance(weight_map, dict):
                raise ValueError(f'{osp.join(path, index)}: not a weight index, expected a '
                                 '"weight_map" object of parameter name -> shard file')
            shards = sorted(set(weight_map.values()))
            files = [osp.join(path, s) for s in shards]
    if not files:
        raise FileNotFoundError(f'{path} has a {CONFIG_FILE} but no weights: expected one of '
                                f'{WEIGHT_FILES + INDEX_FILES}')
    state_dict: StateDict = OrderedDict()
    for file in files:
        state_dict.update(load_checkpoint_file(file, map_location))
    return state_dict, config


def read(path: str, map_location: Any = 'cpu') -> Optional[StateDict]:
    """The format's reading quirk for :func:`mmbeit.converters.read.read_checkpoint`: a model
    folder's weights, or None when ``path`` is not a model folder."""
    return read_model_dir(os.fspath(path), map_location)[0] if is_model_dir(path) else None


#: the image processors' PIL resampling codes -> mmcv / mmpretrain interpolation names
PIL_RESAMPLE = {0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming'}
#: BEiT's own normalisation (v1 models and transformers' default); v2 uses ImageNet's
BEIT_MEAN = BEIT_STD = (0.5, 0.5, 0.5)

#: what a folder needs to be read (for errors about folders that are not)
FOLDER_HINT = (f'a transformers model folder has {CONFIG_FILE} and one of '
               f'{" / ".join(WEIGHT_FILES + INDEX_FILES)}')

# --------------------------------------------------------- config.json -> mmbeit config pieces
#: the tokenizer of BeitForMaskedImageModeling (BEiT v1): OpenAI's DALL-E encoder, not in the
#: folder; ``init_weights()`` loads it
MIM_TOKENIZER = dict(
    type='mmbeit.DALLEEncoder', checkpoint='https://cdn.openai.com/dall-e/encoder.pkl')


def mmbeit_model_cfg(config: Union[Mapping[str, Any], str, os.PathLike]) -> dict:
    """What a transformers ``config.json`` says, as mmbeit config pieces.

    Args:
        config: the parsed ``config.json``, its path, or a model folder holding it.

    Returns:
        dict(task=..., backbone=BEiT kwargs, num_classes=..., classes=[label names] or None,
        for masked image modeling vocab_size and the tokenizer's config, for segmentation
        out_indices / pool_scales / auxiliary head settings).
    """
    if isinstance(config, (str, os.PathLike)):
        path = osp.join(config, CONFIG_FILE) if osp.isdir(config) else os.fspath(config)
        config = read_json(path)
    arch = (config.get('architectures') or ['BeitModel'])[0]
    task = TASK_OF_ARCHITECTURE.get(arch, 'backbone')
    image_size = config.get('image_size', 224)
    backbone = dict(
        arch=dict(
            embed_dims=config.get('hidden_size', 768),
            num_layers=config.get('num_hidden_layers', 12),
            num_heads=config.get('num_attention_heads', 12),
            feedforward_channels=config.get('intermediate_size', 3072)),
        img_size=tuple(image_size) if isinstance(image_size, (list, tuple)) else image_size,
        patch_size=config.get('patch_size', 16),
        in_channels=config.get('num_channels', 3),
        layer_scale_init_value=config.get('layer_scale_init_value', 0.1),
        use_abs_pos_emb=config.get('use_absolute_position_embeddings', False),
        use_rel_pos_bias=config.get('use_relative_position_bias', False),
        use_shared_rel_pos_bias=config.get('use_shared_relative_position_bias', False),
        use_mask_token=config.get('use_mask_token', False),
        norm_eps=config.get('layer_norm_eps', 1e-12),
    )
    mean_pooling = config.get('use_mean_pooling', True)
    if task == 'classification':
        backbone.update(
            out_type='avg_featmap' if mean_pooling else 'cls_token', final_norm=not mean_pooling)
    elif task == 'mim':
        backbone.update(out_type='raw', final_norm=True)
    elif task == 'segmentation':
        hf_indices = config.get('out_indices', [3, 5, 7, 11])
        if min(hf_indices) < 2:
            raise ValueError(f'config.json out_indices {hf_indices} take the patch embeddings '
                             '(entry 1); mmbeit\'s BEiT outputs transformer layers only')
        backbone.update(
            out_type='featmap',
            final_norm=False,
            out_indices=tuple(hf_out_index_to_layer(i) for i in hf_indices))
    classes = label_names(config)
    out = dict(
        task=task,
        backbone=backbone,
        classes=classes,
        num_classes=len(classes) if classes else config.get('num_labels'))
    if task == 'mim':
        out['vocab_size'] = config.get('vocab_size', 8192)
        out['tokenizer'] = dict(MIM_TOKENIZER, vocab_size=out['vocab_size'])
    if task == 'segmentation':
        out.update(
            pool_scales=tuple(config.get('pool_scales', (1, 2, 3, 6))),
            channels=config.get('hidden_size', 768),
            use_auxiliary_head=config.get('use_auxiliary_head', True),
            auxiliary_channels=config.get('auxiliary_channels', 256),
            auxiliary_num_convs=config.get('auxiliary_num_convs', 1),
            auxiliary_concat_input=config.get('auxiliary_concat_input', False))
    return out


def label_names(config: Mapping[str, Any]) -> Optional[List[str]]:
    """``config.json``'s ``id2label`` in id order; None when it has none (or a broken one)."""
    id2label = config.get('id2label') or {}
    try:
        return [id2label[k] for k in sorted(id2label, key=int)] or None
    except (TypeError, ValueError):
        return None


def hf_out_index_to_layer(index: int) -> int:
    """The 0-based layer that ``BeitForSemanticSegmentation`` reads for ``out_indices`` entry
    ``index``.

    transformers takes ``hidden_states[index - 1]`` and its ``hidden_states[0]`` is the
    patch embedding, so entry ``index`` is the output of layer ``index - 2``. (Its
    ``BeitBackbone`` reads ``hidden_states[index]``; the Hub's ADE20K models keep unilm's
    ``[3, 5, 7, 11]`` and so use layers 1, 3, 5, 9. unilm's and mmseg's layers 3, 5, 7, 11
    would be ``[5, 7, 9, 13]``, and 13 is out of range for 12 layers.)
    """
    return int(index) - 2


def layer_to_hf_out_index(layer: int) -> int:
    """Inverse of :func:`hf_out_index_to_layer`."""
    return int(layer) + 2


# ------------------------------------------------------------------------------ export
# mmbeit BEiT keys -> transformers' on-disk names (qkv is split by :func:`export`)
_EXPORT_BACKBONE = [
    (r'cls_token', 'beit.embeddings.cls_token'),
    (r'mask_token', 'beit.embeddings.mask_token'),
    (r'pos_embed', 'beit.embeddings.position_embeddings'),
    (r'patch_embed\.proj\.(weight|bias)', r'beit.embeddings.patch_embeddings.projection.\1'),
    (r'rel_pos_bias\.table', 'beit.encoder.relative_position_bias.relative_position_bias_table'),
    (r'layers\.(\d+)\.norm1\.(weight|bias)', r'beit.encoder.layer.\1.layernorm_before.\2'),
    (r'layers\.(\d+)\.norm2\.(weight|bias)', r'beit.encoder.layer.\1.layernorm_after.\2'),
    (r'layers\.(\d+)\.attn\.rel_pos_bias\.table', r'beit.encoder.layer.\1.attention.attention.'
     r'relative_position_bias.relative_position_bias_table'),
    (r'layers\.(\d+)\.attn\.proj\.(weight|bias)',
     r'beit.encoder.layer.\1.attention.output.dense.\2'),
    (r'layers\.(\d+)\.mlp\.fc1\.(weight|bias)', r'beit.encoder.layer.\1.intermediate.dense.\2'),
    (r'layers\.(\d+)\.mlp\.fc2\.(weight|bias)', r'beit.encoder.layer.\1.output.dense.\2'),
    (r'layers\.(\d+)\.gamma([12])', r'beit.encoder.layer.\1.lambda_\2'),
    (r'layers\.(\d+)\.attn\.(qkv\.weight|q_bias|v_bias)', None),  # split below
    (r'fc_norm\.(weight|bias)', r'beit.pooler.layernorm.\1'),
    (r'norm\.(weight|bias)', r'beit.layernorm.\1'),  # moved for MIM below
]
_EXPORT_NECK_AND_HEADS = [
    (r'neck\.upsample_4x\.([013])\.(.+)', r'fpn1.\1.\2'),
    (r'neck\.upsample_2x\.0\.(weight|bias)', r'fpn2.0.\1'),
    (r'(decode_head|auxiliary_head)\.conv_seg\.(weight|bias)', r'\1.classifier.\2'),
    (r'(decode_head|auxiliary_head)\.(.+)', r'\1.\2'),
]


def export(parts: Mapping[str, Mapping[str, torch.Tensor]],
           task: str,
           num_heads: Optional[int] = None,
           img_size: Optional[int] = None,
           out_indices: Optional[Sequence[int]] = None,
           pool_scales: Sequence[int] = (1, 2, 3, 6),
           classes: Optional[Sequence[str]] = None,
           norm_eps: float = 1e-6) -> Tuple[StateDict, dict]:
    """mmbeit's canonical layout -> (transformers on-disk state dict, ``config.json`` dict).

    Args:
        parts: the canonical state dict split by role
            (:func:`mmbeit.converters.layout.split_roles`).
        task: 'classification' (BeitForImageClassification), 'mim'
            (BeitForMaskedImageModeling) or 'segmentation' (BeitForSemanticSegmentation).
        num_heads: attention heads; read from the relative position tables when
            the model has them, else required.
        img_size: square image size of the config; read from the position
            tables when None.
        out_indices: (segmentation) the backbone's 0-based out_indices.
        pool_scales: (segmentation) UPerHead pool scales.
        classes: label names for ``id2label``.
        norm_eps: LayerNorm epsilon of the mmbeit model (transformers defaults to 1e-12).
    """
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; choose one of {TASKS}')
    bb = parts.get('backbone.')
    if not bb:
        raise ValueError('the checkpoint has no BEiT backbone weights')
    hf = apply_rules(bb, _EXPORT_BACKBONE, 'mmbeit (export)')
    num_layers = 1 + max(int(k.split('.')[1]) for k in bb if k.startswith('layers.'))
    C = bb['cls_token'].shape[-1]
    for i in range(num_layers):
        q, k, v = split_qkv(bb[f'layers.{i}.attn.qkv.weight'])
        p = f'beit.encoder.layer.{i}.attention.attention.'
        hf[p + 'query.weight'], hf[p + 'key.weight'], hf[p + 'value.weight'] = q, k, v
        hf[p + 'query.bias'] = bb.get(f'layers.{i}.attn.q_bias', torch.zeros(C))
        hf[p + 'value.bias'] = bb.get(f'layers.{i}.attn.v_bias', torch.zeros(C))

    tables = [v for k, v in bb.items() if k.endswith('rel_pos_bias.table')]
    if num_heads is None:
        if not tables:
            raise ValueError('the model has no relative position tables: pass num_heads')
        num_heads = tables[0].shape[1]
    patch_size = bb['patch_embed.proj.weight'].shape[-1]
    if img_size is None:
        from mmbeit.layers.pos_resize import infer_square_grid, infer_square_window
        if tables:
            img_size = infer_square_window(tables[0].shape[0])[0] * patch_size
        elif 'pos_embed' in bb:
            img_size = infer_square_grid(bb['pos_embed'].shape[1] - 1)[0] * patch_size
        else:
            raise ValueError('cannot tell the image size from the weights: pass img_size')

    has_norm, has_fc_norm = 'norm.weight' in bb, 'fc_norm.weight' in bb
    config = dict(
        model_type='beit',
        architectures=[ARCHITECTURES[task]],
        hidden_size=C,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=bb['layers.0.mlp.fc1.weight'].shape[0],
        hidden_act='gelu',
        layer_norm_eps=norm_eps,
        image_size=img_size,
        patch_size=patch_size,
        num_channels=bb['patch_embed.proj.weight'].shape[1],
        use_mask_token='mask_token' in bb,
        use_absolute_position_embeddings='pos_embed' in bb,
        use_relative_position_bias='layers.0.attn.rel_pos_bias.table' in bb,
        use_shared_relative_position_bias='rel_pos_bias.table' in bb,
        layer_scale_init_value=0.1 if 'layers.0.gamma1' in bb else 0.0,
        use_mean_pooling=True,
        drop_path_rate=0.0,
    )
    if task == 'classification':
        head = parts.get('cls_head.') or parts.get('head.', {})  # 'head.': the task says
        if 'fc.weight' not in head:
            raise ValueError('a classification export needs the classifier (head.fc.*)')
        hf['classifier.weight'], hf['classifier.bias'] = head['fc.weight'], head['fc.bias']
        if has_fc_norm and has_norm:
            raise ValueError('the model normalises before (final_norm=True) and after mean pooling '
                             "(out_type='avg_featmap'); transformers does one or the other: build "
                             'the classifier with final_norm=False')
        if not has_norm and not has_fc_norm:
            raise ValueError('transformers classifies either the mean of the patch tokens through '
                             "fc_norm (out_type='avg_featmap') or the normalised cls token "
                             "(out_type='cls_token', final_norm=True); the model does neither")
        if has_norm:  # cls-token classifier: BeitModel's own final norm (beit.layernorm)
            config['use_mean_pooling'] = False
        num_labels = head['fc.weight'].shape[0]
    elif task == 'mim':
        head = parts.get('mim_head.') or parts.get('head.', {})  # 'head.': the task says
        w = head.get(f'{MIM_HEAD_LINEAR}.weight')
        if w is None or not has_norm:
            raise ValueError('a masked-image-modeling export needs the backbone final norm and '
                             f'the MIM head (head.{MIM_HEAD_LINEAR}.*)')
        # BeitForMaskedImageModeling normalises outside BeitModel (whose own norm is
        # an Identity with use_mean_pooling=True)
        hf['layernorm.weight'] = hf.pop('beit.layernorm.weight')
        hf['layernorm.bias'] = hf.pop('beit.layernorm.bias')
        hf['lm_head.weight'], hf['lm_head.bias'] = w, head[f'{MIM_HEAD_LINEAR}.bias']
        config['vocab_size'] = w.shape[0]
        num_labels = None
    else:
        if has_norm or has_fc_norm:
            raise ValueError('transformers segments from un-normalised features: build the '
                             "backbone with final_norm=False and out_type='featmap'")
        if out_indices is None or len(out_indices) != 4:
            raise ValueError('a segmentation export needs the backbone out_indices (four layers)')
        if max(layer_to_hf_out_index(i) for i in out_indices) > num_layers:
            raise ValueError(
                f'out_indices {tuple(out_indices)} use the last layer ({num_layers - 1}), which '
                'transformers\' BeitForSemanticSegmentation cannot take: its out_indices entry i '
                'takes the output of layer i - 2 and i may not exceed the number of layers')
        rest = OrderedDict()
        for role in ('neck.', 'decode_head.', 'auxiliary_head.'):
            for k, v in parts.get(role, {}).items():
                rest[role + k] = v
        hf.update(apply_rules(rest, _EXPORT_NECK_AND_HEADS, 'mmbeit (export)'))
        dh = parts.get('decode_head.', {})
        if dh.get(
                'bottleneck.conv.weight') is None or dh['fpn_bottleneck.conv.weight'].shape[0] != C:
            raise ValueError('transformers\' UperHead has channels == hidden size '
                             f'({C}); the decode head differs')
        aux = parts.get('auxiliary_head.', {})
        num_convs = len({k.split('.')[1] for k in aux if k.startswith('convs.')})
        config.update(
            out_indices=[layer_to_hf_out_index(i) for i in out_indices],
            pool_scales=list(pool_scales),
            use_auxiliary_head=bool(aux),
            auxiliary_channels=aux['conv_seg.weight'].shape[1] if aux else 256,
            auxiliary_num_convs=num_convs or 1,
            auxiliary_concat_input='conv_cat.conv.weight' in aux)
        num_labels = dh['conv_seg.weight'].shape[0]
    if num_labels is not None:
        names = list(classes) if classes else [f'LABEL_{i}' for i in range(num_labels)]
        if len(names) != num_labels:
            raise ValueError(f'{len(names)} class names for {num_labels} outputs')
        config['id2label'] = {str(i): n for i, n in enumerate(names)}
        config['label2id'] = {n: i for i, n in enumerate(names)}
    hf = OrderedDict((k, v.detach().contiguous().clone()) for k, v in hf.items())
    return hf, config


def image_processor_config(size: Union[int, Sequence[int]],
                           mean: Sequence[float] = BEIT_MEAN,
                           std: Sequence[float] = BEIT_STD,
                           crop_size: Union[int, Sequence[int], None] = None,
                           interpolation: str = 'bicubic') -> dict:
    """A ``BeitImageProcessor``'s ``preprocessor_config.json``: resize to ``size`` (h, w),
    optionally centre-crop to ``crop_size``, rescale by 1/255, normalise by mean/std.

    Args:
        size: the resize, int or (h, w): the model's image size unless it crops.
        mean: per-channel mean of RGB pixels in [0, 1]. Defaults to BEiT's 0.5.
        std: per-channel std in [0, 1] units. Defaults to BEiT's 0.5.
        crop_size: centre crop after the resize, int or (h, w); None: no crop.
        interpolation: the resize's resampling (one of :data:`PIL_RESAMPLE`'s names).
    """
    resample = {name: code for code, name in PIL_RESAMPLE.items()}
    if interpolation not in resample:
        raise ValueError(f'interpolation {interpolation!r}: transformers\' image processors '
                         f'resample with one of {sorted(resample)}')
    for name, value in (('mean', mean), ('std', std)):
        if len(value) != 3 or max(abs(float(v)) for v in value) > 1:
            raise ValueError(f'image {name} {list(value)}: expected 3 values of RGB pixels in '
                             '[0, 1] (divide 0-255 values by 255)')

    def hw(value: Union[int, Sequence[int]]) -> dict:
        h, w = (value, value) if isinstance(value, int) else value
        return dict(height=int(h), width=int(w))

    return dict(
        image_processor_type='BeitImageProcessor',
        do_resize=True,
        size=hw(size),
        resample=resample[interpolation],
        do_center_crop=crop_size is not None,
        crop_size=hw(crop_size if crop_size is not None else size),
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(m) for m in mean],
        image_std=[float(s) for s in std],
        do_reduce_labels=False)


def write_model_dir(out_dir: str,
                    state_dict: Mapping[str, torch.Tensor],
                    config: Mapping,
                    processor: Optional[Mapping] = None) -> str:
    """Write a model folder as ``save_pretrained`` does: :data:`CONFIG_FILE`, the weights
    (``model.safetensors``) and, if given, :data:`PROCESSOR_FILE`. Returns ``out_dir``."""
    try:
        from safetensors.torch import save_file
    except ImportError as e:
        raise ImportError(
            'exporting to transformers needs safetensors: pip install safetensors') from e
    os.makedirs(out_dir, exist_ok=True)
    save_file(dict(state_dict), osp.join(out_dir, WEIGHT_FILES[0]), metadata={'format': 'pt'})
    files = [(CONFIG_FILE, config)] + ([(PROCESSOR_FILE, processor)] if processor else [])
    for name, data in files:
        with open(osp.join(out_dir, name), 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=2, sort_keys=True)
    return out_dir
