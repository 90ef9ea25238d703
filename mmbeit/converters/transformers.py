"""Hugging Face transformers BEiT checkpoints, both ways.

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
saved with ``torch.save`` has those names, and both are read here. A model
directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
possibly sharded) is read by :func:`load_transformers_dir`; its ``config.json``
gives the architecture, image size, labels and head (:func:`mmbeit_model_cfg`).

:func:`mmbeit.converters.export.to_transformers` writes the on-disk names, so any
transformers version loads the export with ``BeitFor*.from_pretrained``.
"""
import json
import os
import re
from typing import Any, List, Mapping, Union

import torch

from .layout import MIM_HEAD_LINEAR
from .read import INDEX_FILES, WEIGHT_FILES, is_transformers_dir, load_transformers_dir
from .rules import Rule, StateDict, apply_rules, fuse_qkv, prefix_rules

__all__ = [
    'NAME', 'TASKS', 'ARCHITECTURES', 'WEIGHT_FILES', 'INDEX_FILES', 'BACKBONE_RULES', 'HEAD_RULES',
    'matches', 'convert', 'is_transformers_dir', 'load_transformers_dir', 'mmbeit_model_cfg',
    'hf_out_index_to_layer', 'layer_to_hf_out_index'
]

NAME = 'transformers'
TASKS = ('classification', 'mim', 'segmentation')
ARCHITECTURES = {
    'classification': 'BeitForImageClassification',
    'mim': 'BeitForMaskedImageModeling',
    'segmentation': 'BeitForSemanticSegmentation',
}

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
    """transformers state dict (BeitModel or a BeitFor* task model) -> mmbeit's canonical layout."""
    if any(k.startswith('beit.') for k in state_dict):
        rules = prefix_rules(BACKBONE_RULES, 'beit.', 'backbone.') + HEAD_RULES
    else:  # a bare BeitModel / BeitBackbone
        rules = prefix_rules(BACKBONE_RULES, '', 'backbone.') + HEAD_RULES
    return fuse_qkv(apply_rules(state_dict, rules, NAME), NAME)


def mmbeit_model_cfg(config: Union[Mapping[str, Any], str, os.PathLike]) -> dict:
    """What a transformers ``config.json`` says, as mmbeit config pieces.

    Args:
        config: the parsed ``config.json``, its path, or a model folder holding it.

    Returns:
        dict(task=..., backbone=BEiT kwargs, num_classes=..., classes=[label names] or None,
        and for segmentation out_indices / pool_scales / auxiliary head settings).
    """
    if isinstance(config, (str, os.PathLike)):
        path = os.path.join(config, 'config.json') if os.path.isdir(config) else config
        with open(path) as f:
            config = json.load(f)
    arch = (config.get('architectures') or ['BeitModel'])[0]
    task = {v: k for k, v in ARCHITECTURES.items()}.get(arch, 'backbone')
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
    id2label = config.get('id2label') or {}
    classes = [id2label[k] for k in sorted(id2label, key=int)] if id2label else None
    out = dict(
        task=task,
        backbone=backbone,
        classes=classes,
        num_classes=len(classes) if classes else config.get('num_labels'))
    if task == 'mim':
        out['vocab_size'] = config.get('vocab_size', 8192)
    if task == 'segmentation':
        out.update(
            pool_scales=tuple(config.get('pool_scales', (1, 2, 3, 6))),
            channels=config.get('hidden_size', 768),
            use_auxiliary_head=config.get('use_auxiliary_head', True),
            auxiliary_channels=config.get('auxiliary_channels', 256),
            auxiliary_num_convs=config.get('auxiliary_num_convs', 1),
            auxiliary_concat_input=config.get('auxiliary_concat_input', False))
    return out


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
