"""VQ-KD tokenizer checkpoints (BEiT v2): unilm's, mmpretrain's and mmbeit's training model's.

unilm (``beit2/modeling_vqkd.py``, e.g. ``vqkd_encoder_base_decoder_3x768x12_clip-d5036aa7.pth``,
``{'model': ...}``)::

    encoder.{cls_token,pos_embed,patch_embed.proj.*}, encoder.blocks.{i}.{norm1,norm2,
    attn.{qkv.weight,q_bias,v_bias,proj},mlp.fc1,mlp.fc2}.*, encoder.fc_norm.* (its
    mean-pooling ViT: ``norm`` is an Identity, ``fc_norm`` normalises every token: our
    final ``norm``), encode_task_layer.{0,2}.*, quantize.embedding.{weight,initted},
    quantize.cluster_size, quantize.embedding.{cluster_size,embed_avg},
    decoder.* (the same ViT names, 1x1 patches), decode_task_layer.{0,2}.*,
    [scaling_layer.{shift,scale}], [teacher_model.*] (CLIP's or DINO's whole model)

mmpretrain (``VQKD``; OpenMMLab's ``vqkd_encoder.pth``, and ``target_generator.*`` of its
BEiT v2 checkpoints): ``encoder.*`` in OpenMMLab's BEiT names (``layers.{i}.ln1``,
``ffn.layers.0.0``, ``ln1`` = the final norm), ``encode_task_layer.*``, ``quantize.*``.

mmbeit's ``VQKDTrainer`` (``tokenizer.*``, ``decoder.*``, ``decode_task_layer.*``,
``teacher.vit.*``): the tokenizer is ``tokenizer.*``.

Into the tokenizer (``mmbeit.VQKD``, the canonical ``target_generator.`` role) the decoder,
``decode_task_layer``, the teacher and unilm's ``scaling_layer`` constants are dropped by
name: a tokenizer has none of them. unilm's ``quantize.embedding.cluster_size`` and
``embed_avg`` are dropped too: unilm's ``EmbeddingEMA`` keeps them but its forward never
reads them (the EMA updates ``embedding.weight`` and ``quantize.cluster_size``).
:func:`convert_trainer` converts everything but the teacher into ``VQKDTrainer`` keys.
"""
from collections import OrderedDict
from typing import List, Mapping, Tuple

import torch

from . import mmpretrain, unilm
from .rules import Rule, StateDict, add_prefix, apply_rules, prefix_rules

NAME = 'vqkd'
DESCRIPTION = ("a VQ-KD tokenizer (BEiT v2): unilm's vqkd_encoder_*.pth (encoder.blocks.*, "
               "quantize.*, decoder.*), mmpretrain's VQKD (encoder.layers.0.ln1, quantize.*) or "
               "mmbeit's VQKDTrainer (tokenizer.*, decoder.*)")
# detection order (lowest first): its keys (encoder.*, quantize.*) are its own
PRIORITY = 45

# the tokenizer's own parts, shared by every layout (unilm's EmbeddingEMA cluster_size /
# embed_avg: kept, never read by its forward); in :mod:`.mmpretrain`, whose BEiT v2
# checkpoints convert their target_generator.* with them
QUANTIZE_RULES: List[Rule] = mmpretrain.QUANTIZE_RULES

# unilm's VisionTransformer with use_mean_pooling: fc_norm is the per-token final norm
UNILM_VIT_RULES: List[Rule] = [(r'fc_norm\.(weight|bias)', r'norm.\1')] + unilm.BACKBONE_RULES

UNILM_TOKENIZER_RULES: List[Rule] = (
    prefix_rules(UNILM_VIT_RULES, 'encoder.', 'encoder.') + QUANTIZE_RULES)
MMPRETRAIN_TOKENIZER_RULES: List[Rule] = mmpretrain.VQKD_RULES

# what a tokenizer does not have: dropped by name when loading one
NOT_TOKENIZER_RULES: List[Rule] = [
    (r'(decoder|decode_task_layer|teacher_model|teacher|scaling_layer|loss)\..+', None),
]

# into VQKDTrainer: the decoder side too (the teacher is the trainer's to convert)
UNILM_TRAINER_RULES: List[Rule] = (
    prefix_rules(UNILM_VIT_RULES, 'encoder.', 'tokenizer.encoder.') +
    prefix_rules(QUANTIZE_RULES, '', 'tokenizer.') +
    prefix_rules(UNILM_VIT_RULES, 'decoder.', 'decoder.') + [
        (r'decode_task_layer\.([02])\.(weight|bias)', r'decode_task_layer.\1.\2'),
        (r'scaling_layer\.(shift|scale)', None),  # constants, rebuilt from the teacher's kind
    ])


def _layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'unilm', 'mmpretrain', 'trainer' or '' (not a VQ-KD checkpoint)."""
    keys = list(state_dict)
    if 'tokenizer.quantize.embedding.weight' in state_dict and any(
            k.startswith('decoder.') for k in keys):
        return 'trainer'
    if 'quantize.embedding.weight' not in state_dict:
        return ''
    if any(k.startswith('encoder.blocks.') for k in keys):
        return 'unilm'
    if any(k.startswith(('encoder.layers.0.ln1.', 'encoder.layers.0.ffn.')) for k in keys):
        return 'mmpretrain'
    return ''


def is_unilm_vqkd(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """unilm's layout (``encoder.blocks.*`` next to ``quantize.embedding.weight``)."""
    return _layout(state_dict) == 'unilm'


def matches(state_dict: Mapping[str, torch.Tensor], wrapper=None) -> bool:
    return bool(_layout(state_dict))


def convert_tokenizer(state_dict: Mapping[str, torch.Tensor], fmt: str = NAME) -> StateDict:
    """A bare VQ-KD tokenizer in any layout (unilm's, mmpretrain's, mmbeit's) -> ``mmbeit.VQKD``
    keys (no prefix). (mmpretrain's BEiT v2 checkpoints convert their ``target_generator.*``
    with :data:`.mmpretrain.VQKD_RULES`, the same rules: importing this module there would be a
    cycle.)"""
    layout = _layout(state_dict)
    _note_dropped(state_dict, fmt)
    if layout == 'trainer':
        state_dict = OrderedDict((k[len('tokenizer.'):] if k.startswith('tokenizer.') else k, v)
                                 for k, v in state_dict.items())
        return apply_rules(state_dict, [(r'((encoder|encode_task_layer|quantize)\..+)', r'\1')] +
                           NOT_TOKENIZER_RULES, fmt)
    if layout == 'unilm':
        return apply_rules(state_dict, UNILM_TOKENIZER_RULES + NOT_TOKENIZER_RULES, fmt)
    if layout == 'mmpretrain':
        return apply_rules(state_dict, MMPRETRAIN_TOKENIZER_RULES + NOT_TOKENIZER_RULES, fmt)
    raise ValueError(f'{fmt}: not a VQ-KD tokenizer (no quantize.embedding.weight with '
                     'encoder.blocks.* (unilm) or encoder.layers.*.ln1 (mmpretrain))')


def _note_dropped(state_dict: Mapping[str, torch.Tensor], fmt: str) -> None:
    """Say in the log which parts a tokenizer leaves out, by name."""
    parts = sorted({
        k.split('.')[0] + '.*'
        for k in state_dict if k.split('.')[0] in ('decoder', 'decode_task_layer', 'teacher_model',
                                                   'teacher', 'scaling_layer', 'loss')
    })
    if parts:
        from mmengine.logging import print_log
        print_log(
            f'{fmt}: a VQ-KD tokenizer leaves out {", ".join(parts)} of the checkpoint '
            '(the decoder and teacher of its training; mmbeit.VQKDTrainer loads them)',
            logger='current')


def convert(state_dict: Mapping[str, torch.Tensor], fmt: str = NAME) -> StateDict:
    """Any VQ-KD checkpoint -> mmbeit's canonical layout: the tokenizer's role only."""
    return add_prefix(convert_tokenizer(state_dict, fmt), 'target_generator.')


def convert_trainer(state_dict: Mapping[str, torch.Tensor],
                    fmt: str = NAME) -> Tuple[StateDict, StateDict]:
    """unilm's VQ-KD training file -> (``VQKDTrainer`` keys without the teacher, the teacher's
    own state dict as in the file: ``teacher_model.*`` without the prefix, maybe empty)."""
    layout = _layout(state_dict)
    if layout != 'unilm':
        raise ValueError(f'{fmt}: convert_trainer reads unilm VQ-KD files (encoder.blocks.*, '
                         f'decoder.blocks.*); this one is {layout or "not a VQ-KD file"}')
    teacher = OrderedDict((k[len('teacher_model.'):], v) for k, v in state_dict.items()
                          if k.startswith('teacher_model.'))
    rest = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith('teacher_model.'))
    return apply_rules(rest, UNILM_TRAINER_RULES, fmt), teacher
