r"""The package is layered: every import, lazy ones included, points down this order, so there
is no import cycle. :mod:`torch_mmkg.evaluation` ranks any object with ``score_tails`` /
``score_heads`` and knows nothing of models, so it sits below :mod:`torch_mmkg.nn` (whose
``KGEModel.test`` uses it); the fused kernels are in :mod:`torch_mmkg.ops`, below both."""
import ast
import os

import torch_mmkg

#: Lower layers first; a package may import its own layer's packages only if listed as such.
LAYERS = [
    {'registry', 'home', 'configs'},
    {'data'},
    {'ops', 'loader', 'completion'},
    {'datasets', 'evaluation'},
    {'nn'},
    {'transforms'},  # AlignModalities fits nn's CrossModalAlignment
    {'training'},
    {'analysis'},  # the robustness curve compares models by the trainer's signature
    {'experiment'},
    {'testing', 'cli', '__init__'},
    {'__main__'},
]
ROOT = os.path.dirname(torch_mmkg.__file__)


def imports():
    edges = set()
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith('.py'):
                continue
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, ROOT).split(os.sep)
            pkg = rel[0][:-3] if rel[0].endswith('.py') else rel[0]
            with open(path, encoding='utf-8') as fh:
                tree = ast.parse(fh.read())
            for node in ast.walk(tree):  # every import statement, also inside functions
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.ImportFrom) and node.level > 1:
                    names = ['torch_mmkg.' + '.'.join(rel[:-node.level]
                                                      + ([node.module] if node.module else []))]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    parts = name.split('.')
                    if parts[0] == 'torch_mmkg' and len(parts) > 1 and parts[1] != pkg:
                        edges.add((pkg, parts[1], os.path.relpath(path, ROOT)))
    return edges


def layer(pkg):
    return next(i for i, names in enumerate(LAYERS) if pkg in names)


def test_every_import_points_down():
    upward = [f"{where}: {a} imports {b}" for a, b, where in sorted(imports())
              if layer(b) >= layer(a)]
    assert not upward, '\n'.join(upward)


def test_every_package_has_a_layer():
    packages = {p[:-3] if p.endswith('.py') else p for p in os.listdir(ROOT)
                if not p.startswith(('_', '.')) or p in ('__init__.py', '__main__.py')}
    packages = {p for p in packages if p != '__pycache__'}
    assert packages <= set().union(*LAYERS)
