"""Stage 4 of loading, *fit*: a converted state dict -> exactly the model's keys and shapes.

The one place where a checkpoint is adapted to the model it loads into:

* a shared relative position table is copied into every layer of a model with
  per-layer tables (a pretrained checkpoint into a fine-tuning model);
* relative position tables and absolute position embeddings made for another
  patch grid are resized to the model's
  (:func:`mmbeit.layers.pos_resize.resize_rel_pos_table`,
  :func:`~mmbeit.layers.pos_resize.resize_abs_pos_embed`);
* keys the model legitimately has no place for are dropped *by name*: a mask
  token (only pretraining uses one), a final norm or ``fc_norm`` the model was
  built without, heads of other tasks;
* keys the checkpoint legitimately lacks keep the model's initialization *by
  name*: a whole head or neck the checkpoint does not have, ``fc_norm`` (a
  pretrained checkpoint has none), a mask token.

What is left over (missing, unexpected keys, shapes that differ) is returned for
the load stage to refuse. Imports :mod:`.layout` only; the resize functions are
imported where they are used, so ``import mmbeit.converters`` stays light.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .layout import ROLE_NAMES, TARGET_LAYOUTS

__all__ = ['FitResult', 'fit_state_dict', 'expand_shared_rel_pos_bias']

_SHARED = re.compile(r'(?P<p>(?:.*\.)?)rel_pos_bias\.table')


@dataclass
class FitResult:
    """A state dict fitted to a model, and what fitting did (in words)."""
    state_dict: 'OrderedDict[str, torch.Tensor]'
    notes: List[str] = field(default_factory=list)  # dropped, copied, resized, by name
    kept_init: List[str] = field(default_factory=list)  # model parts the checkpoint lacks
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)  # 'key: checkpoint [..] vs model [..]'
    # the same parts in words, for the one warning: 'the classification head (head.fc)',
    # and the norms among them (they start as identities, not random)
    kept_parts: List[str] = field(default_factory=list)
    kept_norms: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def expand_shared_rel_pos_bias(
        state_dict: Mapping[str, torch.Tensor],
        model_keys: Sequence[str]) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
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
        per_layer = re.compile(re.escape(p) + r'layers\.(\d+)\.attn\.rel_pos_bias\.table')
        targets = sorted((k for k in model_keys if per_layer.fullmatch(k)),
                         key=lambda k: int(per_layer.fullmatch(k).group(1)))
        if not targets or any(t in state_dict for t in targets):
            continue
        table = out.pop(key)
        for t in targets:
            out[t] = table.clone()
        expanded.append(key)
    return out, expanded


def _owner(model: Optional[nn.Module], key: str, attr: str) -> Any:
    """``attr`` of the module that holds parameter ``key`` (or of its parent), if any."""
    if model is None:
        return None
    path = key.rsplit('.', 1)[0] if '.' in key else ''
    for p in (path, path.rsplit('.', 1)[0] if '.' in path else ''):
        try:
            value = getattr(model.get_submodule(p), attr, None)
        except AttributeError:
            value = None
        if value is not None:
            return tuple(value)
    return None


def _resize(key: str, value: torch.Tensor, want: torch.Size,
            model: Optional[nn.Module]) -> Tuple[Optional[torch.Tensor], str]:
    """(the resized tensor or None, a note) for a table or embedding of another grid."""
    from mmbeit.layers.pos_resize import (infer_square_grid, infer_square_window,
                                          resize_abs_pos_embed, resize_rel_pos_table)
    if key.endswith('rel_pos_bias.table') and value.dim() == 2 and value.shape[1] == want[1]:
        dst = _owner(model, key, 'window_size') or infer_square_window(want[0])
        try:
            src = infer_square_window(value.shape[0])
        except ValueError:
            return None, ''
        return (resize_rel_pos_table(value, src, dst),
                f'resized {key} from a {src[0]}x{src[1]} to a {dst[0]}x{dst[1]} window')
    if key.endswith('pos_embed') and value.dim() == 3 and value.shape[2] == want[2]:
        dst = _owner(model, key, 'patch_resolution') or infer_square_grid(want[1] - 1)
        try:
            src = infer_square_grid(value.shape[1] - 1)
        except ValueError:
            return None, ''
        return (resize_abs_pos_embed(value, src, dst),
                f'resized {key} from a {src[0]}x{src[1]} to a {dst[0]}x{dst[1]} patch grid')
    return None, ''


def fit_state_dict(state_dict: Mapping[str, torch.Tensor],
                   model_state: Mapping[str, torch.Tensor],
                   target: str,
                   left_out: Sequence[str] = (),
                   model: Optional[nn.Module] = None) -> FitResult:
    """Fit a converted state dict to a model (see the module docstring).

    Args:
        state_dict: converted for ``target`` (:func:`~.convert.convert_checkpoint`).
        model_state: the model's ``state_dict()`` (keys, shapes, initial values).
        target: what the model is (:data:`~.layout.TARGETS`).
        left_out: canonical roles the conversion left out (named in the notes).
        model: the model, to read the patch grids its tables are made for (else the
            grid is inferred from the shapes, square).
    """
    notes = [
        f"left out the checkpoint's {ROLE_NAMES[r]} ({r}*): a {target} has none" for r in left_out
    ]
    out, expanded = expand_shared_rel_pos_bias(state_dict, list(model_state))
    for key in expanded:
        notes.append(f'copied the shared relative position table {key} into every layer')
    model_keys = set(model_state)
    bb = '' if target == 'backbone' else 'backbone.'

    # checkpoint parts the model was built without
    optional = {
        bb + 'mask_token': 'the model has no mask token (only masked image modeling uses one)',
        bb + 'norm.': 'the model has no final norm (final_norm=False)',
        bb + 'fc_norm.': "the model does not pool with fc_norm (out_type is not 'avg_featmap')",
    }
    for start, why in optional.items():
        dropped = [k for k in out if k.startswith(start) and k not in model_keys]
        if dropped and not any(k.startswith(start) for k in model_keys):
            for k in dropped:
                del out[k]
            notes.append(f'dropped {", ".join(dropped)}: {why}')

    # model parts the checkpoint legitimately lacks: keep their initialization
    kept, kept_parts, kept_norms = [], [], []
    keep_init = {
        bb + 'fc_norm.': ('the pooling norm', 'the checkpoint has no fc_norm (it was not '
                          'fine-tuned with mean pooling)'),
        bb + 'mask_token': ('the mask token', 'the checkpoint has no mask token')
    }
    for role, prefix in TARGET_LAYOUTS[target].items():
        if role != 'backbone.' and prefix:
            keep_init[prefix] = (f'the {ROLE_NAMES[role]}',
                                 f'the checkpoint has no {ROLE_NAMES[role]}')
    for start, (part, why) in keep_init.items():
        wanted = [k for k in model_keys if k.startswith(start)]
        if wanted and not any(k.startswith(start) for k in out):
            for k in wanted:
                out[k] = model_state[k]
            kept.append(f'{start}* keeps its initialization: {why}')
            words = f'{part} ({_module_name(wanted, start)})'
            (kept_norms if start == bb + 'fc_norm.' else kept_parts).append(words)
    for k in model_keys:  # normalisation constants of data preprocessors, if persistent
        if k.startswith('data_preprocessor.') and k not in out:
            out[k] = model_state[k]

    # tables and embeddings of another patch grid
    mismatched = []
    for k, v in list(out.items()):
        want = model_state.get(k)
        if want is None or not isinstance(v, torch.Tensor) or v.shape == want.shape:
            continue
        resized, note = _resize(k, v, want.shape, model)
        if resized is not None and resized.shape == want.shape:
            out[k] = resized
            notes.append(note)
        else:
            mismatched.append(f'{k}: checkpoint {list(v.shape)} vs model {list(want.shape)}')

    missing = sorted(model_keys - set(out))
    unexpected = sorted(set(out) - model_keys)
    return FitResult(out, notes, kept, missing, unexpected, mismatched, kept_parts, kept_norms)


def _module_name(keys: Sequence[str], prefix: str) -> str:
    """The one key (``backbone.mask_token``), the one module that holds ``keys``
    (``head.fc``), else ``prefix*``."""
    if len(keys) == 1:
        return keys[0]
    modules = {k.rsplit('.', 1)[0] if '.' in k else k for k in keys}
    return modules.pop() if len(modules) == 1 else prefix + '*'
