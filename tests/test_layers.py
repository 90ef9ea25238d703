"""The layers stay modules: hooks fire, FLOP counters see every linear, replacements take effect."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmbeit.layers.attention import BEiTAttention
from mmbeit.models.backbones.beit import BEiT

LINEARS = ('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2')


def tiny(**kwargs) -> BEiT:
    torch.manual_seed(0)
    model = BEiT(arch='tiny', img_size=64, **kwargs)
    with torch.no_grad():  # every parameter off its init, so replacements and biases matter
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _linear_names(model: BEiT):
    return [f'layers.{i}.{name}' for i in range(model.num_layers) for name in LINEARS]


def test_forward_hooks_fire_on_every_projection():
    model = tiny()
    calls = []
    for name in _linear_names(model):
        model.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: calls.append((name, tuple(out.shape))))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert [n for n, _ in calls] == _linear_names(model)  # each once, in order
    assert dict(calls)['layers.0.attn.qkv'] == (2, 17, 3 * 64)
    assert dict(calls)['layers.0.mlp.fc1'] == (2, 17, 256)


def test_qkv_bias_keeps_its_keys_and_values():
    """q and v biases (no k bias) stay ``attn.q_bias`` / ``attn.v_bias``, added after ``qkv``."""
    attn = tiny().layers[0].attn
    keys = {k for k in attn.state_dict() if not k.startswith('rel_pos_bias')}
    assert keys == {'qkv.weight', 'q_bias', 'v_bias', 'proj.weight', 'proj.bias'}
    x = torch.randn(2, 17, 64)
    bias = torch.cat([attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias])
    with torch.no_grad():
        out = attn(x, (4, 4))
        # the same attention written with the functional qkv of timm / unilm
        qkv = F.linear(x, attn.qkv.weight, bias).reshape(2, 17, 3, 4, 16).permute(2, 0, 3, 1, 4)
        ref = F.scaled_dot_product_attention(*qkv, attn_mask=attn.rel_pos_bias((4, 4))[None])
        ref = attn.proj(ref.transpose(1, 2).reshape(2, 17, 64))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    no_bias = BEiTAttention(64, 4, qkv_bias=False)
    assert no_bias.q_bias is None and 'q_bias' not in no_bias.state_dict()


def test_complexity_counts_every_linear_and_warns_about_none(monkeypatch):
    """mmengine's FLOP counter attributes qkv/proj/fc1/fc2 FLOPs to the modules themselves."""
    import mmengine.analysis.jit_analysis as jit_analysis
    from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
    model = tiny()
    x = torch.randn(1, 3, 64, 64)
    messages = []
    real = jit_analysis.print_log
    monkeypatch.setattr(jit_analysis, 'print_log', lambda msg, *a, **k:
                        (messages.append(str(msg)), real(msg, *a, **k)))
    info = get_model_complexity_info(model, inputs=(x, ), show_table=False, show_arch=False)
    never_called = [m for m in messages if 'never called' in m]
    for name in _linear_names(model):
        assert not any(name in m for m in never_called), name
    flops = FlopAnalyzer(model, (x, ))
    assert not set(_linear_names(model)) & flops.uncalled_modules()
    by_module = flops.by_module()
    tokens = 1 + 4 * 4
    for name in _linear_names(model):
        linear = model.get_submodule(name)
        assert by_module[name] == tokens * linear.in_features * linear.out_features, name
    assert info['flops'] == flops.total() >= sum(by_module[n] for n in _linear_names(model))


class LoRA(nn.Module):
    """A LoRA-style wrapper: the frozen base layer plus a low-rank delta B(A(x))."""

    def __init__(self, base: nn.Linear, rank: int = 2, scale: float = 1.0) -> None:
        super().__init__()
        self.base, self.scale = base, scale
        self.a = nn.Linear(base.in_features, rank, bias=False)
        self.b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.b.weight)  # starts as the base layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.b(self.a(x))


@pytest.mark.parametrize('name', ['mlp.fc1', 'attn.qkv'])
def test_lora_replacement_changes_the_output(name):
    model = tiny()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        parent, child = name.split('.')
        for layer in model.layers:
            owner = getattr(layer, parent)
            setattr(owner, child, LoRA(getattr(owner, child)))
        torch.testing.assert_close(model(x)[0], before, rtol=0, atol=1e-6)  # B = 0: no change
        for layer in model.layers:
            getattr(getattr(layer, parent), child).b.weight.normal_(0, 0.5)
        after = model(x)[0]
    assert (after - before).abs().max() > 1e-2
    # the delta trains: gradients reach A and B
    model.train()
    model(x)[0].sum().backward()
    lora = getattr(getattr(model.layers[0], parent), child)
    assert lora.a.weight.grad.abs().sum() > 0 and lora.b.weight.grad.abs().sum() > 0
