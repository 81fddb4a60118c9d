r"""The API reference (docs/) cannot drift from the code: every public name (the :obj:`__all__`
of every package and of the documented modules) is listed on a page, every listed name exists
and is public, every page is reachable; and, as a slow test, Sphinx builds it with warnings as
errors (as CI does)."""
import importlib
import os
import os.path as osp
import pkgutil
import re
import shutil
import subprocess
import sys

import torch_mmkg
from torch_mmkg.testing import onlyFullTest, withPackage

DOCS = osp.join(osp.dirname(__file__), '..', 'docs')

#: Packages whose names are not in the reference, and why.
UNDOCUMENTED = {
    'torch_mmkg.testing': 'test helpers of the project itself (they import pytest)',
}
#: Modules (not packages) whose :obj:`__all__` the reference covers too.
DOCUMENTED_MODULES = [
    'torch_mmkg.home',
    'torch_mmkg.registry',
    'torch_mmkg.nn.loss',
    'torch_mmkg.nn.regimes',
    'torch_mmkg.nn.representation',
]

_DIRECTIVE = re.compile(r'^\.\. (\w+)::\s*(\S*)\s*$')
_AUTO_ONE = {'autoclass', 'autofunction', 'autodata', 'autoexception', 'autoattribute'}


def rst_files():
    out = []
    for base, dirs, files in os.walk(DOCS):
        dirs[:] = [d for d in dirs if d not in ('_build', 'generated', '_templates')]
        out += [osp.join(base, f) for f in files if f.endswith('.rst')]
    return sorted(out)


def documented():
    r"""The :obj:`(module, name)` pairs the pages list: autosummary entries under the current
    module, and single :obj:`.. autoclass::`-like directives."""
    found = {}
    for path in rst_files():
        module, in_summary = None, False
        with open(path, encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                where = f'{osp.relpath(path, DOCS)}:{number}'
                match = _DIRECTIVE.match(line.strip()) if not line.startswith(' ') else None
                if match:
                    directive, arg = match.groups()
                    in_summary = directive == 'autosummary'
                    if directive in ('currentmodule', 'automodule', 'module'):
                        module = arg
                    elif directive in _AUTO_ONE:
                        mod, _, name = arg.rpartition('.')
                        found[(mod or module, name)] = where
                    continue
                if in_summary and line.startswith('   ') and line.strip():
                    entry = line.strip()
                    if entry.startswith(':'):  # an option of the directive
                        continue
                    found[(module, entry.lstrip('~'))] = where
                elif line.strip() and not line.startswith(' '):
                    in_summary = False
    return found


def public_modules():
    names = ['torch_mmkg']
    for info in pkgutil.walk_packages(torch_mmkg.__path__, 'torch_mmkg.'):
        if info.ispkg and not any(info.name == u or info.name.startswith(u + '.')
                                  for u in UNDOCUMENTED):
            names.append(info.name)
    return names + DOCUMENTED_MODULES


def test_the_rst_parser_sees_the_pages():
    found = documented()
    assert ('torch_mmkg.nn.models', 'NATIVE') in found
    assert ('torch_mmkg.transforms', 'DropModality') in found
    assert ('torch_mmkg.home', 'get_home_dir') in found
    assert all(module for module, _ in found), 'an entry without a current module'


def test_every_public_name_is_documented():
    found = documented()
    by_name = {}
    for module, name in found:
        by_name.setdefault(name, []).append(module)
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        assert hasattr(module, '__all__'), f"{module_name} has no __all__"
        for name in module.__all__:
            obj = getattr(module, name)
            # Documented here, or where the same object is documented under the same name
            # (a re-export such as torch_mmkg.nn.TransE of torch_mmkg.nn.kge.TransE).
            if not any(getattr(importlib.import_module(m), name, None) is obj
                       for m in by_name.get(name, [])):
                missing.append(f"{module_name}.{name}")
    assert not missing, (
        f"public names missing from the API reference (add each to the autosummary list of "
        f"its package's page in docs/modules/): {missing}")


def test_every_documented_name_exists_and_is_public():
    stale = []
    for (module_name, name), where in documented().items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            stale.append(f"{where}: no module {module_name}")
            continue
        if not hasattr(module, name):
            stale.append(f"{where}: {module_name} has no {name}")
        elif name not in getattr(module, '__all__', ()):
            stale.append(f"{where}: {name} is not in {module_name}.__all__")
    assert not stale, f"the API reference lists names the code does not export: {stale}"


def test_every_page_is_in_the_index():
    index = open(osp.join(DOCS, 'index.rst'), encoding='utf-8').read()
    entries = set(re.findall(r'^   (modules/\S+)$', index, re.M))
    pages = {osp.splitext(osp.relpath(p, DOCS))[0].replace(os.sep, '/')
             for p in rst_files()} - {'index'}
    assert pages == entries, (f"pages missing from index.rst's toctree: {pages - entries}; "
                              f"toctree entries without a page: {entries - pages}")


@onlyFullTest
@withPackage('sphinx')
def test_docs_build_without_warnings(tmp_path):
    # A copy, so that autosummary's stub pages are not written into the checkout.
    src = tmp_path / 'docs'
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns('_build', 'generated'))
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', str(src),
         str(tmp_path / 'html')], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert (tmp_path / 'html' / 'generated' / 'torch_mmkg.nn.models.NATIVE.html').exists()
