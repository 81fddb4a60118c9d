r"""Packaging: the LICENSE the metadata names, the :obj:`torch-mmkg` console script,
:obj:`torch_mmkg.__version__`, and the example configs shipped as package data
(:mod:`torch_mmkg.configs`), in the wheel too."""
import importlib.metadata
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

import torch_mmkg
from torch_mmkg import cli
from torch_mmkg.configs import CONFIG_DIR, UnknownConfigError, config_path, list_configs

tomllib = pytest.importorskip('tomllib')  # Python >= 3.11

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def pyproject():
    with open(osp.join(ROOT, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def test_license_file_matches_the_metadata():
    project = pyproject()['project']
    assert project['license'] == 'MIT'
    assert project['license-files'] == ['LICENSE']
    text = open(osp.join(ROOT, 'LICENSE'), encoding='utf-8').read()
    assert text.startswith('MIT License')
    assert 'Copyright (c) 2026 torch_mmkg developers' in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_version():
    assert torch_mmkg.__version__ == pyproject()['project']['version']
    assert torch_mmkg.__version__ == importlib.metadata.version('torch_mmkg')


def test_version_falls_back_to_pyproject(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, 'version', not_installed)
    assert torch_mmkg._version() == pyproject()['project']['version']


def test_console_script(capsys):
    assert pyproject()['project']['scripts'] == {'torch-mmkg': 'torch_mmkg.cli:main'}
    # The installed metadata says the same (a stale one: reinstall with `pip install -e .`).
    (entry, ) = importlib.metadata.entry_points(group='console_scripts', name='torch-mmkg')
    assert entry.load() is cli.main
    # The script passes main's return value to sys.exit: it must be the exit status.
    assert cli.main(['list']) == 0
    assert 'native' in capsys.readouterr().out


def test_configs_are_package_data():
    setuptools_cfg = pyproject()['tool']['setuptools']
    assert setuptools_cfg['package-data']['torch_mmkg.configs'] == ['*.yaml']
    assert osp.isfile(osp.join(CONFIG_DIR, '__init__.py'))  # a package, found by find
    names = list_configs()
    assert len(names) >= 40 and 'native_db15k' in names and names == sorted(names)
    assert sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith('.yaml')) == names


def test_examples_configs_is_the_package_folder():
    examples = osp.join(ROOT, 'examples', 'configs')
    assert osp.islink(examples) and os.readlink(examples) == osp.join('..', 'torch_mmkg',
                                                                      'configs')
    assert osp.samefile(examples, CONFIG_DIR)


def test_config_path():
    path = config_path('native_db15k')
    assert osp.isabs(path) and osp.isfile(path)
    assert path == osp.join(CONFIG_DIR, 'native_db15k.yaml')
    assert config_path('native_db15k.yaml') == path
    assert config_path('NATIVE_DB15K') == path
    assert config_path('Native_DB15K.YAML') == path
    assert cli.load_config_file(path)['model'] == 'native'


def test_config_path_errors():
    with pytest.raises(UnknownConfigError, match=r"no shipped config named 'natve_db15k' "
                       r"\(close names: native_db15k"):
        config_path('natve_db15k')
    with pytest.raises(FileNotFoundError, match=r'shipped configs: adamf_db15k, .*vista_mkgw'):
        config_path('zzzz')  # nothing close: every name
    with pytest.raises(ValueError, match='takes the name of a shipped config'):
        config_path('examples/configs/native_db15k.yaml')
    with pytest.raises(TypeError, match='name must be a string'):
        config_path(None)


def test_wheel_carries_configs_license_and_script(tmp_path):
    setuptools = pytest.importorskip('setuptools')
    if int(setuptools.__version__.split('.')[0]) < 77:
        pytest.skip(f'setuptools {setuptools.__version__} < 77 (PEP 639 license fields)')
    pytest.importorskip('wheel')
    # A copy of what the wheel is built from, so that build/ is not written in the checkout.
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('pyproject.toml', 'setup.cfg', 'README.md', 'LICENSE'):
        shutil.copy(osp.join(ROOT, name), src / name)
    shutil.copytree(osp.join(ROOT, 'torch_mmkg'), src / 'torch_mmkg',
                    ignore=shutil.ignore_patterns('__pycache__'))
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                           '--no-build-isolation', '-q', '-w', str(tmp_path / 'dist'), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel, ) = (tmp_path / 'dist').glob('torch_mmkg-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n[len('torch_mmkg/configs/'):-5] for n in names
               if n.startswith('torch_mmkg/configs/') and n.endswith('.yaml')}
    assert shipped == set(list_configs())
    assert 'torch_mmkg/configs/__init__.py' in names and 'torch_mmkg/home.py' in names
    info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
    assert f'{info}/licenses/LICENSE' in names
    entry_points = zipfile.ZipFile(wheel).read(f'{info}/entry_points.txt').decode()
    assert 'torch-mmkg = torch_mmkg.cli:main' in entry_points
    metadata = zipfile.ZipFile(wheel).read(f'{info}/METADATA').decode()
    assert 'License-Expression: MIT' in metadata
