"""The import graph of mmbeit/: layers that only import downwards, no cycle, light imports.

Layers, top to bottom (a module may import its own layer and the ones below)::

    tools/                                                 (outside the package)
    4  mmbeit.apis
    3  mmbeit.engine, mmbeit.visualization, mmbeit.deployment
    2  mmbeit.models (components), mmbeit.datasets
    1  mmbeit.converters, mmbeit.layers (pure nn.Modules and tensor functions)
    0  mmbeit (the package), mmbeit.version, mmbeit.compat, mmbeit.registry, mmbeit.utils

The graph is read from the source (``ast``): every ``import`` statement, lazy ones inside
functions included, is an edge for the layer rule. The cycle check looks at what runs at import
time: module-level imports, plus the parent packages that every import runs first.
"""
import ast
import os
import os.path as osp
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional, Set, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'mmbeit')

# longest prefix wins
LAYERS: Dict[str, int] = {
    'mmbeit.apis': 4,
    'mmbeit.engine': 3,
    'mmbeit.visualization': 3,
    'mmbeit.deployment': 3,
    'mmbeit.models': 2,
    'mmbeit.datasets': 2,
    'mmbeit.layers': 1,
    'mmbeit.converters': 1,
    'mmbeit': 0,  # the package's __init__
    'mmbeit.version': 0,
    'mmbeit.compat': 0,
    'mmbeit.registry': 0,
    'mmbeit.utils': 0,
}


def module_files() -> Dict[str, str]:
    """Dotted module name -> file, for every .py file under mmbeit/."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            rel = osp.relpath(osp.join(folder, name), ROOT)[:-3].split(os.sep)
            if rel[-1] == '__init__':
                rel = rel[:-1]
            found['.'.join(rel)] = osp.join(folder, name)
    return found


MODULES = module_files()


def layer_of(module: str) -> Optional[int]:
    parts = module.split('.')
    for n in range(len(parts), 0, -1):
        prefix = '.'.join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return None


def _is_package(module: str) -> bool:
    return MODULES[module].endswith('__init__.py')


def _resolve(module: str, node: ast.AST) -> List[str]:
    """The mmbeit modules an import statement in ``module`` names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split('.')[0] in ('mmbeit', 'tools')]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split('.') if _is_package(module) else module.split('.')[:-1]
        base = base[:len(base) - node.level + 1]
        if node.module:
            base += node.module.split('.')
        source = '.'.join(base)
    else:
        source = node.module or ''
    if source.split('.')[0] not in ('mmbeit', 'tools'):
        return []
    # `from pkg import submodule` imports the submodule; `from mod import name` the module
    targets = [f'{source}.{a.name}' for a in node.names if f'{source}.{a.name}' in MODULES]
    return targets or [source]


class _Imports(ast.NodeVisitor):
    """Collects (target, at_import_time) for every import statement of a module."""

    def __init__(self, module: str) -> None:
        self.module, self.depth, self.found = module, 0, []

    def _function(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node) -> None:
        self.found += [(t, self.depth == 0) for t in _resolve(self.module, node)]

    visit_ImportFrom = visit_Import


def import_edges() -> List[Tuple[str, str, bool, int]]:
    """(importer, imported, at import time, line) for every mmbeit import under mmbeit/."""
    edges = []
    for module, path in sorted(MODULES.items()):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        collector = _Imports(module)
        collector.visit(tree)
        lines: Dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, node):
                    lines.setdefault(target, node.lineno)
        edges += [(module, target, eager, lines[target]) for target, eager in collector.found]
    return edges


EDGES = import_edges()


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if layer_of(m) is None)
    assert not unplaced, f'add these to LAYERS in {__file__}: {unplaced}'


def test_imports_name_existing_modules():
    missing = [
        f'{a} (line {line}) imports {b}' for a, b, _, line in EDGES
        if b not in MODULES and not b.startswith('tools')
    ]
    assert not missing, '\n'.join(missing)


def test_no_upward_import():
    upward = [
        f'{a} (layer {layer_of(a)}, line {line}) imports {b} (layer {layer_of(b)})'
        for a, b, _, line in EDGES
        if b.startswith('tools') or (layer_of(b) or 0) > (layer_of(a) or 0)
    ]
    assert not upward, 'imports against the layer order:\n' + '\n'.join(upward)


def _parents(module: str) -> List[str]:
    parts = module.split('.')
    return ['.'.join(parts[:n]) for n in range(1, len(parts))]


def test_no_import_cycle():
    graph: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for a, b, eager, _ in EDGES:
        if eager and b in MODULES:
            graph[a].update(p for p in _parents(b) + [b] if p != a and p not in _parents(a))
    # a package runs before its submodules: the parent edges themselves are not cycles
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]),
        OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)


def test_import_mmbeit_is_light():
    proc = _run("""
        import sys
        import mmbeit
        heavy = [m for m in ('mmseg', 'mmpretrain', 'mmengine.runner', 'mmcv', 'mmbeit.models',
                             'mmbeit.engine', 'mmbeit.datasets', 'mmbeit.apis')
                 if m in sys.modules]
        print('HEAVY', heavy)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'HEAVY []' in proc.stdout, proc.stdout


def test_mim_head_does_not_import_the_engine():
    proc = _run("""
        import sys
        from mmbeit.models.heads.beit_mim_head import BEiTMIMHead
        print('LOADED', sorted(m for m in sys.modules
                                if m.startswith(('mmbeit.engine', 'mmbeit.datasets'))
                                or m == 'mmengine.runner'))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'LOADED []' in proc.stdout, proc.stdout


def _registering_modules() -> List[str]:
    found = []
    for module, path in MODULES.items():
        with open(path, encoding='utf-8') as f:
            if '.register_module(' in f.read():
                found.append(module)
    return sorted(found)


def test_registry_locations_register_every_component():
    """With no package walk, each component module must be imported by its package."""
    modules = _registering_modules()
    assert 'mmbeit.models.backbones.beit' in modules
    proc = _run(f"""
        import sys
        from mmbeit.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RUNNERS, TRANSFORMS
        for registry in (HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RUNNERS, TRANSFORMS):
            registry.import_from_location()
        print('MISSING', [m for m in {modules!r} if m not in sys.modules])
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'MISSING []' in proc.stdout, proc.stdout


def test_no_empty_package():
    """Every package holds at least one module besides its ``__init__``."""
    packages = [m for m in MODULES if _is_package(m)]
    empty = [p for p in packages if not any(m.startswith(p + '.') for m in MODULES)]
    assert not empty, f'empty packages: {empty}'
