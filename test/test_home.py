r"""The data home (:mod:`torch_mmkg.home`): set_home_dir wins over $TORCH_MMKG_HOME, which wins
over ~/.cache/torch_mmkg; datasets live in <home>/datasets."""
import os.path as osp
import pathlib

import pytest

import torch_mmkg
from torch_mmkg import home


@pytest.fixture(autouse=True)
def clean_home(monkeypatch):
    monkeypatch.delenv('TORCH_MMKG_HOME', raising=False)
    monkeypatch.setenv('HOME', '/home/someone')
    home.set_home_dir(None)
    yield
    home.set_home_dir(None)


def test_default_is_the_user_cache():
    assert home.get_home_dir() == osp.join('/home/someone', '.cache', 'torch_mmkg')
    assert home.default_root() == osp.join('/home/someone', '.cache', 'torch_mmkg',
                                           'datasets')


def test_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_MMKG_HOME', str(tmp_path))
    assert home.get_home_dir() == str(tmp_path)
    assert home.default_root() == osp.join(str(tmp_path), 'datasets')
    monkeypatch.setenv('TORCH_MMKG_HOME', '~/mmkg')  # ~ is expanded
    assert home.get_home_dir() == '/home/someone/mmkg'
    monkeypatch.setenv('TORCH_MMKG_HOME', '')  # empty counts as unset
    assert home.get_home_dir() == osp.join('/home/someone', '.cache', 'torch_mmkg')


def test_set_home_dir_wins_and_resets(monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_MMKG_HOME', '/from/env')
    home.set_home_dir(tmp_path / 'h')  # a PathLike
    assert home.get_home_dir() == str(tmp_path / 'h')
    assert home.default_root() == str(tmp_path / 'h' / 'datasets')
    home.set_home_dir('~/x')
    assert home.get_home_dir() == '/home/someone/x'
    home.set_home_dir(None)
    assert home.get_home_dir() == '/from/env'


def test_nothing_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_MMKG_HOME', str(tmp_path / 'not_yet'))
    home.default_root()
    assert not (tmp_path / 'not_yet').exists()


def test_bad_paths():
    with pytest.raises(TypeError, match='set_home_dir: path must be a str'):
        home.set_home_dir(3)
    with pytest.raises(ValueError, match='must not be empty'):
        home.set_home_dir('')
    assert home._home_dir is None  # a rejected path changes nothing


def test_exported_from_the_package():
    assert torch_mmkg.get_home_dir is home.get_home_dir
    assert torch_mmkg.set_home_dir is home.set_home_dir
    assert torch_mmkg.default_root is home.default_root
    for name in ('get_home_dir', 'set_home_dir', 'default_root'):
        assert name in torch_mmkg.__all__
    torch_mmkg.set_home_dir(pathlib.Path('/data/mmkg'))
    assert home.get_home_dir() == '/data/mmkg'
