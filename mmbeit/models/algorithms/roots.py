"""Root models of mmbeit's configs that load every BEiT checkpoint format on any load.

``mmbeit.BEiTClassifier`` is mmpretrain's ``ImageClassifier`` and
``mmbeit.BEiTSegmentor`` is mmseg's ``EncoderDecoder``, each with the state-dict
pre-hook of :mod:`mmbeit.converters.hooks` on the root: whatever loads a
checkpoint into them (torch's ``load_state_dict``, mmengine's ``load_checkpoint``
and Runner, mmseg's ``init_model`` / ``MMSegInferencer``, mmpretrain's
``get_model`` / inferencers, the host libraries' ``tools/train.py`` and
``tools/test.py``) gets the checkpoint converted and fitted completely, or an
error naming the format and the keys. A hook on the backbone alone cannot do
this: torch hands a child only the keys under its prefix, and timm's, unilm's and
transformers' keys are not under ``backbone.``.

The classes are made on first use (PEP 562 module ``__getattr__``), so importing
mmbeit's models imports neither mmpretrain's nor mmseg's.
"""
import importlib
from typing import Any, Dict, Tuple

from mmbeit.converters.hooks import register_conversion_hook
from mmbeit.registry import MODELS

# BEiTClassifier and BEiTSegmentor are attributes made on first use (__getattr__ below)
__all__ = ['ROOTS', 'root_class']

# name -> (module of the host class, host class, loading target)
ROOTS: Dict[str, Tuple[str, str, str]] = {
    'BEiTClassifier': ('mmpretrain.models.classifiers', 'ImageClassifier', 'classifier'),
    'BEiTSegmentor': ('mmseg.models.segmentors', 'EncoderDecoder', 'segmentor'),
}
_CLASSES: Dict[str, type] = {}


def root_class(name: str) -> type:
    """The class ``name`` of :data:`ROOTS` (made once, on first use)."""
    cls = _CLASSES.get(name)
    if cls is None:
        module, host, target = ROOTS[name]
        try:
            base = getattr(importlib.import_module(module), host)
        except ImportError as e:
            pkg = module.split('.')[0]
            raise ImportError(f'mmbeit.{name} is {pkg}\'s {host}: pip install '
                              f'{"mmsegmentation" if pkg == "mmseg" else pkg}') from e

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            base.__init__(self, *args, **kwargs)
            register_conversion_hook(self, target=target)

        doc = (f"{pkg_name(module)}'s ``{host}``; every ``load_state_dict`` converts and fits "
               'any BEiT checkpoint format to it completely, or raises naming the format '
               f'and keys (:mod:`{__name__}`).')
        cls = type(
            name, (base, ), {
                '__init__': __init__,
                '__doc__': doc,
                '__module__': __name__,
                '__qualname__': name,
                'conversion_target': target
            })
        _CLASSES[name] = cls
    return cls


def pkg_name(module: str) -> str:
    return module.split('.')[0]


def __getattr__(name: str) -> type:
    if name in ROOTS:
        return root_class(name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _register(name: str) -> None:

    def build(*args: Any, **kwargs: Any) -> Any:
        return root_class(name)(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f'Build :func:`root_class` ``({name!r})`` (imports its host library).'
    MODELS.register_module(name=name, module=build)


for _name in ROOTS:
    _register(_name)
