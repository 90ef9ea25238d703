"""Stage 5 of loading, *load*, and the pipeline that runs the five stages in order.

read (:mod:`.read`) -> detect (:mod:`.detect`) -> convert (:mod:`.convert`) ->
fit (:mod:`.fit`) -> load (here). Every door runs this one pipeline:
:func:`load_pretrained` (``init_cfg=dict(type='Pretrained')``, mmbeit's apis and
tools), the Runner's ``load_from`` / resume (:class:`mmbeit.engine.BEiTRunner`),
and any ``load_state_dict`` of a model that carries the state-dict pre-hook of
:mod:`.hooks` (mmengine's ``load_checkpoint``, mmseg's ``init_model``, mmpretrain's
``get_model``, the host libraries' tools).

A load is complete or refused: what the fit stage cannot place raises
:class:`CheckpointMismatchError`, naming the keys and the detected format. What the
checkpoint lacks and the model keeps at its initialization (a head the checkpoint has
none of) is said once, in one WARNING that names the parts.

Errors a caller can catch (all name the file where one was read):

* :class:`CheckpointMismatchError` (a ``RuntimeError``): a valid checkpoint of another
  model (other keys or shapes; a ViT, not a BEiT); :class:`UnknownCheckpointError`, a
  subclass that is also a ``ValueError``: a checkpoint of no format mmbeit reads.
* :class:`mmbeit.utils.checkpoint_io.CheckpointFileError` (a ``ValueError``): a file that
  is not a checkpoint at all (empty, truncated, text, an HTML page).
* ``pickle.UnpicklingError``: a file refused for safety (it would run code).

Memory: a file is mapped, not read (:func:`mmbeit.utils.checkpoint_io.load_checkpoint_file`);
the load stage copies it into the model a part at a time and gives each part's pages back,
so loading holds about one part of the file besides the model, not a second model.
"""
import contextlib
import functools
import logging
import os
import re
import threading
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .convert import canonical_state_dict, to_canonical
from .detect import check_format
from .fit import FitResult, fit_state_dict
from .layout import ROLE_NAMES, assemble, default_target, infer_target
from .read import read_checkpoint, unwrap_checkpoint
from .rules import StateDict, strip_prefix

__all__ = [
    'CheckpointMismatchError', 'UnknownCheckpointError', 'PartsNotInCheckpointError', 'LoadReport',
    'no_init', 'init_skipped', 'fit_checkpoint', 'load_converted_state_dict', 'load_pretrained',
    'convert_file', 'state_dict_fits', 'fitted_load'
]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not fit the model (a checkpoint of another model)."""


class UnknownCheckpointError(CheckpointMismatchError, ValueError):
    """A checkpoint in no format mmbeit reads (catch it as either base class)."""


class PartsNotInCheckpointError(CheckpointMismatchError):
    """A checkpoint that fits but lacks parts of a model built under :func:`no_init` (those
    parts have no weights): build the model normally and load again."""


# keys of models that are not BEiT, and what to call them
_VIT_QKV_BIAS = re.compile(r'(?:.*\.)?blocks\.\d+\.attn\.qkv\.bias')


def describe_foreign(state_dict: Mapping[str, Any]) -> Optional[str]:
    """What a checkpoint of another model is, when its keys say so (else None)."""
    keys = list(state_dict)
    rel = any('relative_position' in k or 'rel_pos' in k for k in keys)
    if any(_VIT_QKV_BIAS.fullmatch(k) for k in keys) and not rel:
        return ("a ViT (its attention has a fused qkv.bias and no relative position bias), "
                "not a BEiT (q_bias / v_bias and BEiT's relative position bias)")
    return None


def conversion_error(error: Exception, state_dict: Mapping[str, Any], source: str,
                     fmt: Optional[str]) -> CheckpointMismatchError:
    """The error of a checkpoint that does not convert, naming the file and what it is."""
    foreign = describe_foreign(state_dict)
    detail = error.args[0] if error.args else str(error)
    if foreign:
        return CheckpointMismatchError(
            f'{source} is {foreign}: mmbeit loads BEiT checkpoints only. Expected a BEiT '
            f'checkpoint in one of the formats mmbeit reads. ({detail})')
    if fmt is None:  # no format matched
        return UnknownCheckpointError(f'{source}: {detail}')
    return CheckpointMismatchError(f'{source} has keys of the {fmt} format but does not convert '
                                   f'to a BEiT: {detail}')


@dataclass
class LoadReport:
    """What loading did."""
    fmt: str
    target: str
    notes: List[str] = field(default_factory=list)  # what was dropped, copied, resized, by name
    kept_init: List[str] = field(default_factory=list)  # model parts the checkpoint lacks
    missing: List[str] = field(default_factory=list)  # only with strict=False
    unexpected: List[str] = field(default_factory=list)  # only with strict=False


# True while the pipeline itself loads a fitted state dict: the hooks let it through.
_FITTED: ContextVar[bool] = ContextVar('mmbeit_fitted_load', default=False)


@contextlib.contextmanager
def fitted_load() -> Iterator[None]:
    """Within this block, the conversion hooks of :mod:`.hooks` pass state dicts through."""
    token = _FITTED.set(True)
    try:
        yield
    finally:
        _FITTED.reset(token)


def is_fitted_load() -> bool:
    return _FITTED.get()


# torch.nn.init's in-place initializers: every nn.Module (and mmengine's init helpers) calls them
_INIT_FUNCTIONS = ('uniform_', 'normal_', 'trunc_normal_', 'constant_', 'ones_', 'zeros_', 'eye_',
                   'dirac_', 'xavier_uniform_', 'xavier_normal_', 'kaiming_uniform_',
                   'kaiming_normal_', 'orthogonal_', 'sparse_')

_NO_INIT: ContextVar[bool] = ContextVar('mmbeit_no_init', default=False)


@contextlib.contextmanager
def no_init() -> Iterator[None]:
    """Build modules without writing their initial weights (``torch.nn.init`` does nothing).

    For a model whose every weight is loaded next: its parameters are allocated but never
    written, so the memory they take is not touched until the load (with ``assign=True``,
    never). Load with ``load_pretrained(..., assign=True, uninitialized=True)``: a part the
    checkpoint lacks would hold whatever the memory held, so it is refused. Buffers computed
    in constructors (index tables) are made as usual. While a block runs, ``torch.nn.init``'s
    functions are wrappers that skip only in the thread (context) inside the block: other
    threads building models meanwhile initialise them as usual.
    """
    global _PATCHED
    token = _NO_INIT.set(True)
    with _PATCH_LOCK:
        if _PATCHED == 0:
            for name in _INIT_FUNCTIONS:
                setattr(torch.nn.init, name, _skipping(getattr(torch.nn.init, name)))
        _PATCHED += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            _PATCHED -= 1
            if _PATCHED == 0:
                for name in _INIT_FUNCTIONS:
                    setattr(torch.nn.init, name, getattr(torch.nn.init, name).__wrapped__)
        _NO_INIT.reset(token)


_PATCH_LOCK = threading.Lock()
_PATCHED = 0  # how many no_init blocks run (in any thread)


def _skipping(fn: Callable) -> Callable:
    """``fn``, or nothing inside a :func:`no_init` block of this thread."""

    @functools.wraps(fn)
    def init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor if _NO_INIT.get() else fn(tensor, *args, **kwargs)

    return init


def init_skipped() -> bool:
    """Whether modules are being built under :func:`no_init`: a constructor that writes its
    weights other than through ``torch.nn.init`` (a rescale) skips that too."""
    return _NO_INIT.get()


def state_dict_fits(state_dict: Mapping[str, Any], model_state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict has exactly the model's keys, as tensors of the model's shapes."""
    if len(state_dict) != len(model_state):
        return False
    for k, want in model_state.items():
        v = state_dict.get(k)
        if not isinstance(v, torch.Tensor) or v.shape != want.shape:
            return False
    return True


def _shorten(keys: List[str], n: int = 10) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:n])
    return shown + (f', ... ({len(keys) - n} more)' if len(keys) > n else '')


def source_name(checkpoint: Any, source: str = 'checkpoint') -> str:
    """``source``, or the file a loaded checkpoint was mapped from when it is the default."""
    if source != 'checkpoint' or not isinstance(checkpoint, Mapping):
        return source
    from mmbeit.utils.checkpoint_io import file_of
    try:
        return file_of(unwrap_checkpoint(checkpoint)[0]) or source
    except ValueError:
        return source


def mismatch_error(fit: FitResult, source: str, fmt: str, name: str,
                   target: str) -> CheckpointMismatchError:
    lines = [f'{source} ({fmt} format) does not fit {name} (converted for a {target}):']
    if fit.missing:
        lines.append(f'  missing in the checkpoint: {_shorten(fit.missing)}')
    if fit.unexpected:
        lines.append(f'  unexpected (the model has no such keys): {_shorten(fit.unexpected)}')
    if fit.mismatched:
        lines.append(f'  shapes differ: {_shorten(fit.mismatched)}')
    lines.append('  Check that the model config matches the checkpoint (arch, '
                 'use_rel_pos_bias / use_shared_rel_pos_bias, use_abs_pos_emb, heads), '
                 'or pass prefix= to load a part of it.')
    return CheckpointMismatchError('\n'.join(lines))


def fit_checkpoint(model: nn.Module,
                   checkpoint: Any,
                   fmt: Optional[str] = None,
                   prefix: Optional[str] = None,
                   target: Optional[str] = None,
                   model_state: Optional[Mapping[str, torch.Tensor]] = None,
                   source: str = 'checkpoint') -> Tuple[FitResult, str, str]:
    """Stages detect -> convert -> fit of a loaded checkpoint for ``model``.

    Args:
        model: the module the checkpoint is for.
        checkpoint: a loaded checkpoint or state dict of any known format.
        fmt: its format, or None to detect it.
        prefix: only the checkpoint's keys under this prefix (mmengine's ``Pretrained``
            semantics), e.g. ``'backbone.'``.
        target: what ``model`` is (:data:`~.layout.TARGETS`); inferred from its keys.
        model_state: ``model.state_dict()`` if the caller has it.
        source: the file's name, for messages.

    Returns:
        (the fit, the format, the target)
    """
    model_state = model.state_dict() if model_state is None else model_state
    # a root model says what it is (mmbeit.BEiTClassifier: 'classifier'); else its keys do
    target = target or getattr(model, 'conversion_target', None) or infer_target(model_state)
    state_dict, wrapper = unwrap_checkpoint(checkpoint)
    fmt = check_format(fmt) if fmt else None
    if not prefix and fmt in (None, 'mmbeit') and state_dict_fits(state_dict, model_state):
        # the model's own keys and shapes (its own checkpoint): nothing to guess, as the hooks do
        return FitResult(OrderedDict(state_dict)), 'mmbeit', target
    converted = None
    if prefix:
        try:
            canonical, read_as = canonical_state_dict(state_dict, fmt, wrapper)
        except (ValueError, KeyError):  # the raw keys may need the prefix stripped first
            canonical = {}
        if any(k.startswith(prefix) for k in canonical):
            # the prefix names a part of the converted checkpoint: that part is the model
            converted, fmt = strip_prefix(canonical, prefix), read_as
            left_out = sorted(
                {k.split('.')[0] + '.'
                 for k in canonical if not k.startswith(prefix)})
        elif any(k.startswith(prefix) for k in state_dict):
            state_dict, wrapper = strip_prefix(state_dict, prefix), None
        else:
            raise CheckpointMismatchError(f'{source}: no key starts with prefix {prefix!r}')
    if converted is None:
        try:
            canonical, fmt = canonical_state_dict(state_dict, fmt, wrapper)
        except (KeyError, ValueError) as e:
            from .detect import FORMAT_MODULES
            read_as = fmt or next(
                (f for f, m in FORMAT_MODULES.items() if m.matches(state_dict, wrapper)), None)
            raise conversion_error(e, state_dict, source, read_as) from None
        converted, left_out = assemble(canonical, target)
    # converting read some of a mapped file (q, k, v to fuse): give those pages back
    from mmbeit.utils.checkpoint_io import release_file_pages
    release_file_pages(state_dict)
    return fit_state_dict(converted, model_state, target, left_out, model), fmt, target


def log_fit(fit: FitResult,
            source: str,
            name: str,
            fmt: str,
            target: str,
            logger: Any = 'current') -> None:
    """Say in the log what was loaded, dropped, copied, resized and kept, by name."""
    from mmengine.logging import print_log
    print_log(f'Loaded {source} into {name} ({fmt} format, as a {target})', logger=logger)
    for note in fit.notes + fit.kept_init:
        print_log(f'  {note}', logger=logger)
    if fit.kept_parts or fit.kept_norms:
        print_log(
            kept_init_warning(fit.kept_parts, fit.kept_norms, source, target),
            logger=logger,
            level=logging.WARNING)


_TASK_CHECKPOINT = {
    'classifier': 'a classification checkpoint',
    'segmentor': 'a segmentation checkpoint',
    'pretrain': 'a pretraining checkpoint',
}


def _join(parts: List[str]) -> str:
    return parts[0] if len(parts) == 1 else ', '.join(parts[:-1]) + ' and ' + parts[-1]


def kept_init_warning(parts: List[str], norms: List[str], source: str, target: str) -> str:
    """One sentence naming the model parts that the checkpoint does not hold."""
    where = 'the checkpoint' if source == 'checkpoint' else source
    what = _TASK_CHECKPOINT.get(target, 'a checkpoint that has them')
    if not parts:
        return (f'{_join(norms)} {"is" if len(norms) == 1 else "are"} not in {where} and '
                'start(s) at weight 1, bias 0; fine-tune or load ' + what)
    one = len(parts) == 1
    text = (f'{_join(parts)} {"is" if one else "are"} not in {where} and '
            f'{"keeps its" if one else "keep their"} random initialisation; '
            f'fine-tune {"it" if one else "them"} or load {what}')
    if norms:
        text += f' ({_join(norms)}, not in it either, starts at weight 1, bias 0)'
    return text


def load_converted_state_dict(model: nn.Module,
                              checkpoint: Any,
                              fmt: Optional[str] = None,
                              prefix: Optional[str] = None,
                              strict: bool = True,
                              target: Optional[str] = None,
                              source: str = 'checkpoint',
                              logger: Any = 'current',
                              assign: bool = False,
                              uninitialized: bool = False) -> LoadReport:
    """Stages detect -> convert -> fit -> load of a loaded checkpoint into ``model``.

    Args:
        model: the module to load into.
        checkpoint: a loaded checkpoint or state dict of any known format.
        fmt: its format, or None to detect it.
        prefix: load only the checkpoint's keys under this prefix (as mmengine's
            ``Pretrained`` init does), e.g. ``'backbone.'``.
        strict: raise on keys that do not fit (after the fit stage's drops by name);
            False reports them in the log at WARNING and skips them (an explicit
            partial load; no door of mmbeit or of the host libraries passes False here).
        target: what ``model`` is (see :data:`~.layout.TARGETS`); inferred from its keys.
        source: the file's name, for messages.
        logger: mmengine logger name for the report.
        assign: the model takes the checkpoint's tensors instead of copying them (cast to
            the model's dtype where it differs): a mapped file's pages become the weights
            and are read when used. Do not overwrite the file while the model lives.
        uninitialized: the model was built under :func:`no_init`: refuse a checkpoint
            that lacks a part of it.

    Raises:
        CheckpointMismatchError: keys or shapes that do not fit, named with the format.
    """
    source = source_name(checkpoint, source)
    fit, fmt, target = fit_checkpoint(model, checkpoint, fmt, prefix, target, source=source)
    name = type(model).__name__
    if fit.mismatched or (strict and not fit.complete):
        raise mismatch_error(fit, source, fmt, name, target)
    if uninitialized and (fit.kept_parts or fit.kept_norms or fit.missing):
        raise PartsNotInCheckpointError(
            f'{source} does not hold {_join(fit.kept_parts + fit.kept_norms + fit.missing)} of '
            f'{name}, which was built without initial weights (no_init); build it normally '
            'to keep those parts at their initialization')
    state_dict = OrderedDict((k, v) for k, v in fit.state_dict.items() if k not in fit.unexpected)
    fit.state_dict = OrderedDict()  # what is loaded is let go part by part
    load_in_parts(model, state_dict, strict and not fit.missing, assign=assign)
    log_fit(fit, source, name, fmt, target, logger)
    if fit.missing or fit.unexpected:
        from mmengine.logging import print_log
        print_log(
            f'  not loaded (strict=False): missing {_shorten(fit.missing)}; '
            f'unexpected {_shorten(fit.unexpected)}',
            logger=logger,
            level=logging.WARNING)
    return LoadReport(
        fmt=fmt,
        target=target,
        notes=fit.notes,
        kept_init=fit.kept_init,
        missing=fit.missing,
        unexpected=fit.unexpected)


PART_BYTES = 16 << 20  # copy at most this much into the model before its pages go back


def load_in_parts(model: nn.Module,
                  state_dict: 'OrderedDict[str, torch.Tensor]',
                  strict: bool = True,
                  part_bytes: int = PART_BYTES,
                  assign: bool = False) -> None:
    """``model.load_state_dict`` of a fitted state dict, a part at a time.

    After each part (about ``part_bytes``) the state dict lets go of its tensors and the
    pages of those mapped from a file go back to the kernel
    (:func:`~mmbeit.utils.checkpoint_io.release_file_pages`), so the load never holds
    the file's weights beside the model's. ``state_dict`` is emptied.

    Args:
        strict: the keys are exactly the model's (checked as a whole, not per part).
        assign: see :func:`load_converted_state_dict` (no pages are given back then: they
            are the model's weights).
    """
    from mmbeit.utils.checkpoint_io import release_file_pages
    model_state = model.state_dict()
    if assign:  # the model's dtypes, and no tensor shared by two keys (training updates one)
        seen = set()
        for k, v in state_dict.items():
            want = model_state.get(k)
            if want is not None and v.dtype != want.dtype:
                v = v.to(want.dtype)
            if id(v) in seen:
                v = v.clone()
            v = v.contiguous()  # a view (a transpose) becomes a weight of its own
            seen.add(id(v))
            state_dict[k] = v
    if strict:
        missing = set(model_state) - set(state_dict)
        unexpected = set(state_dict) - set(model_state)
        if missing or unexpected:
            raise CheckpointMismatchError(f'missing {_shorten(list(missing))}; '
                                          f'unexpected {_shorten(list(unexpected))}')
    keys = list(state_dict)
    with fitted_load():
        while keys:
            part: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
            size = 0
            while keys and (not part or size < part_bytes):
                k = keys.pop(0)
                part[k] = state_dict.pop(k)
                size += part[k].nbytes if isinstance(part[k], torch.Tensor) else 0
            model.load_state_dict(part, strict=False, assign=assign)  # keys checked above
            if not assign:
                release_file_pages(part)
            del part


def load_pretrained(module: nn.Module,
                    checkpoint: Any,
                    prefix: Optional[str] = None,
                    strict: bool = True,
                    fmt: Optional[str] = None,
                    map_location: Any = 'cpu',
                    assign: bool = False,
                    uninitialized: bool = False) -> LoadReport:
    """Load a checkpoint of any known format into ``module``: the whole pipeline.

    Args:
        module: a bare ``mmbeit.BEiT``, a classifier, segmentor or pretraining model, or
            a tokenizer (DALL-E, VQ-KD; what it is is read from its keys).
        checkpoint: path, http(s) URL, transformers model folder, loaded checkpoint
            or state dict.
        prefix: only the keys under this prefix (mmengine's ``Pretrained`` semantics),
            e.g. ``'backbone.'``.
        strict: see :func:`load_converted_state_dict`.
        fmt: the checkpoint's format; detected when None.
        assign, uninitialized: see :func:`load_converted_state_dict` (with :func:`no_init`,
            a model built and loaded never holds its weights twice, nor reads those it does
            not use).

    Returns:
        What was loaded, dropped and kept (:class:`LoadReport`).

    Raises:
        CheckpointMismatchError: keys or shapes that do not fit, named with the format, or
            a checkpoint of another model (a ViT: named as such).
        UnknownCheckpointError: a checkpoint in no known format (the message lists the
            known ones); also a ``ValueError``.
        mmbeit.utils.checkpoint_io.CheckpointFileError: a ``ValueError``: the file is
            empty, truncated, or no checkpoint (text, an HTML page, a Git LFS pointer).
        pickle.UnpicklingError: a file refused for safety (it would run code).
        FileNotFoundError: no such file.
    """
    source = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else 'checkpoint'
    loaded = read_checkpoint(checkpoint, map_location)
    return load_converted_state_dict(
        module,
        loaded,
        fmt=fmt,
        prefix=prefix,
        strict=strict,
        source=str(source),
        assign=assign,
        uninitialized=uninitialized)


def convert_file(src: Any,
                 dst: str,
                 fmt: Optional[str] = None,
                 target: Optional[str] = None) -> Dict[str, Any]:
    """Convert a checkpoint (path, URL, transformers folder) to an mmbeit checkpoint file.

    The file is ``{'state_dict': ..., 'meta': {...}}`` as mmengine writes it, so
    ``load_from`` and ``tools/test.py`` load it as the model's own; ``.safetensors``
    destinations get the bare state dict.

    Args:
        src: the source checkpoint.
        dst: where to write.
        fmt: the source format, or None to detect it.
        target: 'backbone', 'classifier', 'segmentor', 'pretrain' or 'target_generator';
            None picks the task the checkpoint has heads for.

    Returns:
        dict(fmt=..., target=..., left_out=[roles the target has no place for], num_keys=...)
    """
    canonical, fmt = to_canonical(read_checkpoint(src), fmt)
    target = target or default_target(canonical)
    state_dict, left_out = assemble(canonical, target)
    state_dict: StateDict = OrderedDict((k, v.contiguous()) for k, v in state_dict.items())
    from mmbeit.utils.checkpoint_io import atomic_path

    # the tensors may be pages of ``src`` itself (mapped): write beside, then replace
    with atomic_path(dst) as tmp:
        _save(state_dict, tmp, dst.endswith('.safetensors'), fmt, target, str(src))
    return dict(
        fmt=fmt,
        target=target,
        left_out=[ROLE_NAMES[r] for r in left_out],
        num_keys=len(state_dict))


def _save(state_dict: StateDict, path: str, safetensors: bool, fmt: str, target: str,
          src: str) -> None:
    if safetensors:
        from safetensors.torch import save_file
        save_file(
            dict(state_dict),
            path,
            metadata={
                'format': 'pt',
                'converted_from': fmt,
                'target': target
            })
    else:
        torch.save(
            {
                'state_dict': state_dict,
                'meta': {
                    'converted_from': fmt,
                    'target': target,
                    'source': src
                }
            }, path)
