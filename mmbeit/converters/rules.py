"""The rule engine every converter shares: regex key rules and qkv fusion.

A converter is a table of ``(pattern, replacement)`` rules. Each source key is
matched in full against the patterns in order; the first match renames it with
``re.Match.expand(replacement)`` (so ``\\1`` and ``\\g<name>`` work), with
``replacement(match)`` when it is a function (for renames a template cannot
write, such as DALL-E's 1-based block numbers), or drops it when the replacement
is ``None``. A key no rule knows is an error that names the key and the format:
a silent leftover would be a random weight later.

This module imports nothing of mmbeit: every other converter module imports it.
"""
import re
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import torch

__all__ = [
    'Rule', 'StateDict', 'apply_rules', 'prefix_rules', 'strip_prefix', 'add_prefix', 'fuse_qkv',
    'split_qkv', 'first_keys', 'shorten'
]

StateDict = Dict[str, torch.Tensor]
# what a rule renames a matched key to: a template, a function of the match, or None (drop)
Replacement = Union[str, Callable[['re.Match'], str], None]
# (regex matched in full against a source key, replacement)
Rule = Tuple[str, Replacement]


@lru_cache(maxsize=64)
def _compile(rules: Tuple[Rule, ...]) -> Tuple[Tuple['re.Pattern', Replacement], ...]:
    return tuple((re.compile(pattern), repl) for pattern, repl in rules)


def apply_rules(state_dict: Mapping[str, Any], rules: Sequence[Rule], fmt: str) -> StateDict:
    """Rename every key of ``state_dict`` by the first rule that matches it in full.

    Args:
        state_dict: source keys -> tensors.
        rules: ``(pattern, replacement)`` pairs; a ``None`` replacement drops the key,
            a callable one is called with the match.
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
                new_key = repl(m) if callable(repl) else m.expand(repl)
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
            f'{shorten(unknown)}. The checkpoint has parts that mmbeit\'s BEiT cannot hold, '
            f'or it is not a {fmt} checkpoint')
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a, b)
    return a is b


def prefix_rules(rules: Iterable[Rule], src_prefix: str = '', dst_prefix: str = '') -> List[Rule]:
    """The same rules for keys under ``src_prefix``, renamed under ``dst_prefix``."""
    out: List[Rule] = []
    for pattern, repl in rules:
        if callable(repl):
            repl = _prefixed(repl, dst_prefix)
        elif repl is not None:
            repl = dst_prefix.replace('\\', r'\\') + repl
        out.append((re.escape(src_prefix) + pattern, repl))
    return out


def _prefixed(fn: Callable[['re.Match'], str], prefix: str) -> Callable[['re.Match'], str]:

    def rename(m: 're.Match') -> str:
        return prefix + fn(m)

    return rename


def strip_prefix(state_dict: Mapping[str, Any],
                 prefix: str,
                 keep_others: bool = False) -> StateDict:
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
    from mmbeit.utils.checkpoint_io import release_file_pages
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
        # q, k, v of a mapped file were read: give their pages back now, not after all layers
        release_file_pages([q, k, v])
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


def first_keys(keys: Iterable[str], n: int = 8) -> List[str]:
    return list(keys)[:n]


def shorten(keys: Sequence[str], n: int = 12) -> str:
    """The first ``n`` keys, quoted, and how many more there are."""
    shown = ', '.join(repr(k) for k in keys[:n])
    return shown + (f', ... ({len(keys) - n} more)' if len(keys) > n else '')
