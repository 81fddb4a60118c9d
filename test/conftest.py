import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption('--full', action='store_true', default=False,
                     help='run slow tests on full-size real data')


def pytest_configure(config):
    if config.getoption('--full'):
        os.environ['TORCH_MMKG_FULL_TEST'] = '1'


@pytest.fixture
def tmp_root(tmp_path):
    return str(tmp_path)


@pytest.fixture
def single_thread():
    r"""Tiny problems run much faster (and steadier on a loaded machine) on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True, scope='session')
def _data_home(tmp_path_factory):
    r"""Datasets a test processes without a root go to a temporary data home, never to the
    user's ($TORCH_MMKG_HOME or ~/.cache/torch_mmkg)."""
    old = os.environ.get('TORCH_MMKG_HOME')
    os.environ['TORCH_MMKG_HOME'] = str(tmp_path_factory.mktemp('torch_mmkg_home'))
    yield
    if old is None:
        os.environ.pop('TORCH_MMKG_HOME', None)
    else:
        os.environ['TORCH_MMKG_HOME'] = old
