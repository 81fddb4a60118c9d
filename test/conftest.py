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
