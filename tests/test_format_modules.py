"""One module per checkpoint format: its declarations; each piece of its knowledge in one place.

Also the canonical layout's tokenizer-neutral roles (a bare VQ-KD tokenizer, BEiT v2's
``mim_neck.``) and issue 20's silent head loss (a mask token does not make a pretraining
model).
"""
import ast
import os
import os.path as osp

import pytest
import torch

import mmbeit  # noqa: F401
from mmbeit.converters import convert_checkpoint
from mmbeit.converters import detect as detect_stage
from mmbeit.converters import detect_format, load_pretrained
from mmbeit.converters import transformers as hf_format
from mmbeit.converters.layout import assemble, infer_target
from mmbeit.models.backbones.beit import ARCH_ZOO, BEiT

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
C, DEPTH, HEADS = 32, 2, 2
ARCH = dict(embed_dims=C, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=2 * C)


def test_every_format_module_declares_itself():
    modules = detect_stage.MODULES
    assert len({m.NAME for m in modules}) == len(modules)
    for m in modules:
        assert isinstance(m.NAME, str) and isinstance(m.DESCRIPTION, str) and m.DESCRIPTION
        assert isinstance(m.PRIORITY, int)
        assert callable(m.matches) and callable(m.convert)
    priorities = [detect_stage.FORMAT_MODULES[f].PRIORITY for f in detect_stage.FORMATS]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    assert detect_stage.FORMAT_DESCRIPTIONS == {m.NAME: m.DESCRIPTION for m in modules}
    # the order the formats rely on: the most specific names first, and the pairs that
    # share names in the order that tells them apart
    order = detect_stage.FORMATS
    assert order.index('mmseg') < order.index('mmpretrain')
    assert order.index('unilm') < order.index('timm')
    assert order[0] == 'transformers'


def _string_constants(path: str):
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno


@pytest.mark.parametrize('name', [
    'config.json', 'preprocessor_config.json', 'model.safetensors', 'pytorch_model.bin',
    'model.safetensors.index.json', 'pytorch_model.bin.index.json'
])
def test_transformers_file_names_are_declared_once(name):
    """The folder's file names live in the transformers format module only."""
    own = osp.join(REPO, 'mmbeit', 'converters', 'transformers.py')
    found = []
    for folder, _, files in os.walk(osp.join(REPO, 'mmbeit')):
        for file in files:
            path = osp.join(folder, file)
            if file.endswith('.py') and path != own:
                found += [f'{path}:{line}' for s, line in _string_constants(path) if s == name]
    assert not found, f'{name!r} is declared again outside converters/transformers.py: {found}'
    assert name in (hf_format.CONFIG_FILE, hf_format.PROCESSOR_FILE) + hf_format.HUB_WEIGHT_FILES


def test_folder_config_uses_the_backbone_arch_table():
    from mmbeit.apis.folder_config import config_from_timm
    for size in ('base', 'large'):
        cfg = config_from_timm(dict(architecture=f'beitv2_{size}_patch16_224'))
        assert cfg.model.backbone.arch == ARCH_ZOO[size]


# ------------------------------------------------------------------ issue 20
def _classifier_state(use_mask_token: bool) -> dict:
    backbone = BEiT(arch=ARCH, img_size=32, use_mask_token=use_mask_token, final_norm=False)
    state = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    state.update({'head.fc.weight': torch.randn(3, C), 'head.fc.bias': torch.randn(3)})
    return state


def test_a_mask_token_does_not_make_a_pretraining_model():
    """Issue 20: a classifier with a mask token (transformers' use_mask_token=True) kept its
    backbone and lost its head, loaded as a pretraining model."""
    state = _classifier_state(use_mask_token=True)
    assert infer_target(state) == 'classifier'
    canonical = convert_checkpoint(state, target=None)
    assert not any(k.startswith('mim_head.') for k in canonical)
    assert convert_checkpoint(state, target='classifier').keys() == state.keys()
    model = torch.nn.Module()
    model.backbone = BEiT(arch=ARCH, img_size=32, use_mask_token=True, final_norm=False)
    model.head = torch.nn.Module()
    model.head.fc = torch.nn.Linear(C, 3)
    load_pretrained(model, state)
    assert torch.equal(model.head.fc.weight, state['head.fc.weight'])


# ------------------------------------------------------------ tokenizer-neutral roles
def _vqkd_keys(prefix: str = '') -> dict:
    """A bare VQ-KD tokenizer in mmbeit's key names (contracts: encoder.* is an mmbeit.BEiT)."""
    encoder = BEiT(
        arch=ARCH,
        img_size=32,
        use_abs_pos_emb=True,
        use_rel_pos_bias=False,
        layer_scale_init_value=0.)
    state = {f'{prefix}encoder.{k}': v for k, v in encoder.state_dict().items()}
    state.update({
        f'{prefix}encode_task_layer.0.weight': torch.randn(C, C),
        f'{prefix}encode_task_layer.0.bias': torch.randn(C),
        f'{prefix}encode_task_layer.2.weight': torch.randn(8, C),
        f'{prefix}encode_task_layer.2.bias': torch.randn(8),
        f'{prefix}quantize.embedding.weight': torch.randn(16, 8),
        f'{prefix}quantize.embedding.initted': torch.ones(1),
        f'{prefix}quantize.cluster_size': torch.zeros(16),
    })
    return state


def test_a_bare_vqkd_tokenizer_is_a_tokenizer():
    state = _vqkd_keys()
    assert detect_format(state) == 'mmbeit'
    assert infer_target(state) == 'target_generator'
    canonical = convert_checkpoint(state, target=None)
    assert set(canonical) == {'target_generator.' + k for k in state}
    assert convert_checkpoint(state, target='target_generator').keys() == state.keys()


def test_a_v2_pretraining_model_has_its_neck_as_mim_neck():
    """An mmbeit BEiTPretrain with the v2 neck: ``neck.*`` is the mim_neck role (not a
    segmentation neck), ``head.*`` the MIM head, the VQ-KD tokenizer the target generator."""
    backbone = BEiT(arch=ARCH, img_size=32, final_norm=False)
    state = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    neck = {
        'neck.layers.0.norm1.weight': torch.randn(C),
        'neck.layers.0.attn.qkv.weight': torch.randn(3 * C, C),
        'neck.norm.weight': torch.randn(C)
    }
    state.update(neck)
    state.update({'head.fc.weight': torch.randn(16, C), 'head.fc.bias': torch.randn(16)})
    state.update(_vqkd_keys('target_generator.'))
    assert detect_format(state) == 'mmbeit'
    assert infer_target(state) == 'pretrain'
    canonical = convert_checkpoint(state, target=None)
    assert {'mim_neck.' + k[len('neck.'):] for k in neck} <= set(canonical)
    assert 'mim_head.fc.weight' in canonical
    pretrain, left_out = assemble(canonical, 'pretrain')
    assert not left_out and pretrain.keys() == state.keys()
    # without a tokenizer, the v2 neck alone says "pretraining"
    no_tokenizer = {k: v for k, v in state.items() if not k.startswith('target_generator.')}
    assert 'mim_head.fc.weight' in convert_checkpoint(no_tokenizer, target=None)
