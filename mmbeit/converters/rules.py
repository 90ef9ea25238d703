"""The rule engine every converter shares: regex key rules, wrappers, qkv fusion.

A converter is a table of ``(pattern, replacement)`` rules. Each source key is
matched in full against the patterns in order; the first match renames it with
``re.Match.expand(replacement)`` (so ``\\1`` and ``\\g<name>`` work), or drops
it when the replacement is ``None``. A key no rule knows is an error that names
the key and the format: a silent leftover would be a random weight later.
"""
import re
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

__all__ = [
    'Rule', 'StateDict', 'apply_rules', 'prefix_rules', 'unwrap_checkpoint',
    'strip_prefix', 'add_prefix', 'fuse_qkv', 'split_qkv',
    'expand_shared_rel_pos_bias', 'first_keys'
]

StateDict = Dict[str, torch.Tensor]
# (regex matched in full against a source key, replacement template or None to drop)
Rule = Tuple[str, Optional[str]]

# Keys under which training scripts nest the weights: mmengine / mmcv ('state_dict'),
# unilm and DeiT-style scripts ('model', 'module'), a few others ('model_state').
WRAPPER_KEYS = ('state_dict', 'model', 'module', 'model_state')


@lru_cache(maxsize=64)
def _compile(rules: Tuple[Rule, ...]) -> Tuple[Tuple['re.Pattern', Optional[str]], ...]:
    return tuple((re.compile(pattern), repl) for pattern, repl in rules)


def apply_rules(state_dict: Mapping[str, Any], rules: Sequence[Rule], fmt: str) -> StateDict:
    """Rename every key of ``state_dict`` by the first rule that matches it in full.

    Args:
        state_dict: source keys -> tensors.
        rules: ``(pattern, replacement)`` pairs; a ``None`` replacement drops the key.
        fmt: the source format's name, for error messages.

    Returns:
        An ordered dict of renamed keys; tensors are shared, not copied.

    Raises:
        KeyError: keys that no rule matches (all of them are named).
        ValueError: two source keys renamed to one key with different values.
    """
    compiled = _compile(tuple((p, r) for p, r in rules))
    out: StateDict = OrderedDict()
    origin: Dict[str, str] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            m = pattern.fullmatch(key)
            if m is None:
                continue
            if repl is not None:
                new_key = m.expand(repl)
                if new_key in out and not _same(out[new_key], value):
                    raise ValueError(
                        f'{fmt} checkpoint: keys {origin[new_key]!r} and {key!r} both map to '
                        f'{new_key!r} with different values; the checkpoint mixes two layouts')
                out[new_key] = value
                origin[new_key] = key
            break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f'{fmt} checkpoint: no conversion rule for {len(unknown)} key(s): '
            f'{_shorten(unknown)}. The checkpoint has parts that mmbeit\'s BEiT cannot hold, '
            f'or it is not a {fmt} checkpoint')
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a is b


def prefix_rules(rules: Iterable[Rule], src_prefix: str = '', dst_prefix: str = '') -> List[Rule]:
    """The same rules for keys under ``src_prefix``, renamed under ``dst_prefix``."""
    out = []
    for pattern, repl in rules:
        out.append((re.escape(src_prefix) + pattern,
                    None if repl is None else dst_prefix.replace('\\', r'\\') + repl))
    return out


def _is_tensor_dict(obj: Mapping) -> bool:
    values = list(obj.values())
    return bool(values) and sum(isinstance(v, torch.Tensor) for v in values) * 2 >= len(values)


def unwrap_checkpoint(checkpoint: Any) -> Tuple[StateDict, Optional[str]]:
    """The state dict inside a loaded checkpoint file.

    Looks through ``{'state_dict': ...}``, ``{'model': ...}``, ``{'module': ...}``
    wrappers (nested ones too) and strips a ``module.`` prefix that DataParallel
    puts on every key.

    Returns:
        (state dict with only tensor values, the outermost wrapper key or None)

    Raises:
        ValueError: no mapping of tensors is found.
    """
    if isinstance(checkpoint, torch.nn.Module):
        return OrderedDict(checkpoint.state_dict()), None
    wrapper = None
    obj = checkpoint
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((k for k in WRAPPER_KEYS
                      if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is not None and not _is_tensor_dict(obj):
            wrapper = wrapper or inner
            obj = obj[inner]
            continue
        break
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        top = list(checkpoint.keys())[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(f'the checkpoint holds no state dict (a mapping of names to tensors) '
                         f'directly or under {WRAPPER_KEYS}; its top level is {top}')
    state_dict: StateDict = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = strip_prefix(state_dict, 'module.')
    return state_dict, wrapper


def strip_prefix(state_dict: Mapping[str, Any], prefix: str, keep_others: bool = False) -> StateDict:
    """Keys under ``prefix`` with the prefix removed (others dropped unless ``keep_others``)."""
    out: StateDict = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif keep_others:
            out[k] = v
    return out


def add_prefix(state_dict: Mapping[str, Any], prefix: str) -> StateDict:
    return OrderedDict((prefix + k, v) for k, v in state_dict.items())


_Q_WEIGHT = re.compile(r'(?P<p>.*\.attn\.)_q\.weight')


def fuse_qkv(state_dict: StateDict, fmt: str) -> StateDict:
    """Fuse separate q/k/v projections into BEiT's ``qkv.weight``, ``q_bias``, ``v_bias``.

    Converters first rename the separate projections to ``<...>.attn._q.weight``,
    ``_k.weight``, ``_v.weight``, ``_q.bias``, ``_v.bias`` (and ``_k.bias`` if the
    source has one, which must be zero: BEiT has no key bias).
    """
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        m = _Q_WEIGHT.fullmatch(key)
        if m is None:
            if '.attn._' not in key:
                out[key] = value
            continue
        p = m['p']
        try:
            q, k, v = (state_dict[f'{p}_{n}.weight'] for n in 'qkv')
        except KeyError as e:
            raise KeyError(f'{fmt} checkpoint: {e.args[0]} is missing; query, key and value '
                           f'projections of {p[:-1]!r} must all be present') from None
        out[p + 'qkv.weight'] = torch.cat([q, k, v], dim=0)  # [3C, C]
        k_bias = state_dict.get(p + '_k.bias')
        if k_bias is not None and bool(k_bias.abs().max() > 0):
            raise ValueError(f'{fmt} checkpoint: {p}key has a non-zero bias; BEiT has none')
        for n in 'qv':
            if p + f'_{n}.bias' in state_dict:
                out[p + f'{n}_bias'] = state_dict[p + f'_{n}.bias']
    return out


def split_qkv(qkv_weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BEiT's fused ``qkv.weight`` [3C, C] -> contiguous q, k, v weights [C, C] each."""
    return tuple(w.contiguous().clone() for w in qkv_weight.chunk(3, dim=0))


_SHARED = re.compile(r'(?P<p>(?:.*\.)?)rel_pos_bias\.table')


def expand_shared_rel_pos_bias(state_dict: StateDict, model_keys: Iterable[str]
                               ) -> Tuple[StateDict, List[str]]:
    """Copy a shared relative position table into every layer of a per-layer model.

    Applies under any prefix ``P``: ``P.rel_pos_bias.table`` becomes
    ``P.layers.{i}.attn.rel_pos_bias.table`` for every layer the model has, when
    the model has per-layer tables and no shared one and the checkpoint has no
    per-layer tables.

    Returns:
        (new state dict, the shared keys that were expanded)
    """
    model_keys = set(model_keys)
    expanded = []
    out = OrderedDict(state_dict)
    for key in list(state_dict):
        m = _SHARED.fullmatch(key)
        if m is None or key in model_keys:
            continue
        p = m['p']
        targets = sorted((k for k in model_keys
                          if re.fullmatch(re.escape(p) + r'layers\.\d+\.attn\.rel_pos_bias\.table', k)),
                         key=lambda k: int(k[len(p):].split('.')[1]))
        if not targets or any(t in state_dict for t in targets):
            continue
        table = out.pop(key)
        for t in targets:
            out[t] = table.clone()
        expanded.append(key)
    return out, expanded


def first_keys(keys: Iterable[str], n: int = 8) -> List[str]:
    return list(keys)[:n]


def _shorten(keys: Sequence[str], n: int = 12) -> str:
    shown = ', '.join(repr(k) for k in keys[:n])
    return shown + (f', ... ({len(keys) - n} more)' if len(keys) > n else '')
