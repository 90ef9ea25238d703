"""mmbeit weights -> Hugging Face transformers ``BeitFor*`` (the export direction).

Reads any format through the loading pipeline's convert stage
(:func:`mmbeit.converters.convert.convert_checkpoint`), then renames mmbeit's
keys to the names transformers writes on disk (``save_pretrained``), so every
transformers version loads the result with ``BeitFor*.from_pretrained``.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Mapping, Optional, Sequence, Tuple

import torch

from .convert import convert_checkpoint
from .layout import MIM_HEAD_LINEAR, split_roles
from .rules import StateDict, apply_rules, split_qkv
from .transformers import ARCHITECTURES, TASKS, layer_to_hf_out_index

__all__ = ['to_transformers', 'save_transformers']

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


def to_transformers(state_dict: Mapping[str, torch.Tensor],
                    task: str,
                    num_heads: Optional[int] = None,
                    img_size: Optional[int] = None,
                    out_indices: Optional[Sequence[int]] = None,
                    pool_scales: Sequence[int] = (1, 2, 3, 6),
                    classes: Optional[Sequence[str]] = None,
                    norm_eps: float = 1e-6) -> Tuple[StateDict, dict]:
    """mmbeit weights -> (transformers on-disk state dict, ``config.json`` dict).

    Args:
        state_dict: an mmbeit checkpoint for ``task`` (whole model, or in any
            format :func:`mmbeit.converters.convert_checkpoint` reads).
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
    parts = split_roles(convert_checkpoint(state_dict, target=None))
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
        head = parts.get('cls_head.', {})
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
        head = parts.get('mim_head.', {})
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


def save_transformers(state_dict: Mapping[str, torch.Tensor], out_dir: str, task: str,
                      **kwargs) -> str:
    """Write ``config.json`` and ``model.safetensors`` for ``BeitFor*.from_pretrained(out_dir)``.

    Keyword arguments are those of :func:`to_transformers`. Returns ``out_dir``.
    """
    try:
        from safetensors.torch import save_file
    except ImportError as e:
        raise ImportError(
            'exporting to transformers needs safetensors: pip install safetensors') from e
    hf, config = to_transformers(state_dict, task, **kwargs)
    os.makedirs(out_dir, exist_ok=True)
    save_file(dict(hf), osp.join(out_dir, 'model.safetensors'), metadata={'format': 'pt'})
    with open(osp.join(out_dir, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return out_dir
