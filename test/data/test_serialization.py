import os.path as osp
import pickle
import re
from collections import OrderedDict, defaultdict

import numpy as np
import pytest
import torch

from torch_mmkg.data.serialization import UnsafeFileError, check_plain, numpy_globals, safe_load
from torch_mmkg.testing import PlantedPayload


def err(path):
    return re.escape(str(path)) + ': '


def test_plain_data_round_trips(tmp_path):
    obj = {'x': torch.randn(3, 2), 'names': ['a', 'b'], 'n': 3, 'f': 0.5, 'flag': True,
           'none': None, ('entity', 'relation', 'entity'): {'edge_index': torch.ones(2, 2)},
           'nested': [(1, 2.0, 'x')], 'od': OrderedDict(a=torch.zeros(1))}
    path = tmp_path / 'plain.pt'
    torch.save(obj, path)
    out = safe_load(str(path))
    assert out.keys() == obj.keys() and torch.equal(out['x'], obj['x'])
    assert out[('entity', 'relation', 'entity')]['edge_index'].shape == (2, 2)
    assert out['nested'] == [(1, 2.0, 'x')] and out['names'] == ['a', 'b']


@pytest.mark.parametrize('writer', ['torch', 'pickle'])
def test_planted_payload_does_not_run(tmp_path, writer):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'planted.pt'
    if writer == 'torch':
        torch.save({'model': PlantedPayload(marker)}, path)
    else:  # a raw pickle: torch.load's legacy path
        with open(path, 'wb') as f:
            pickle.dump(PlantedPayload(marker), f, protocol=2)
    with pytest.raises(UnsafeFileError, match=err(path) + r"cannot read the checkpoint: it "
                       r"refers to the Python object '(posix|nt)\.system'"):
        safe_load(str(path), 'checkpoint')
    assert not marker.exists()
    # The unsafe load this replaces would have run it (the payload is real).
    if writer == 'torch':
        torch.load(path, weights_only=False)
    else:
        with open(path, 'rb') as f:
            pickle.load(f)
    assert marker.exists()


def test_types_outside_plain_data_are_refused(tmp_path):
    # defaultdict is on PyTorch's process-wide allowlist (PyG adds it): the walk refuses it.
    path = tmp_path / 'dd.pt'
    torch.save({'a': [defaultdict(list)]}, path)
    with pytest.raises(UnsafeFileError, match=err(path) + r"holds an object of type "
                       r"collections.defaultdict at \['a'\]\[0\]"):
        safe_load(str(path))
    check_plain({'a': [defaultdict(list)]}, 'x', allowed=(defaultdict, ))


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'garbage'])
def test_damaged_files_name_the_file(tmp_path, damage):
    good = tmp_path / 'good.pt'
    torch.save({'x': torch.randn(100, 10)}, good)
    path = tmp_path / 'checkpoint.pt'
    data = good.read_bytes()
    path.write_bytes({'empty': b'', 'truncated': data[:len(data) // 2],
                      'garbage': b'not a checkpoint at all' * 10}[damage])
    expected = {'empty': r'the checkpoint is empty \(0 bytes\)',
                'truncated': r'cannot read the checkpoint: it is truncated or corrupt',
                'garbage': r'cannot read the checkpoint: it is not a valid torch.save file'}
    with pytest.raises(UnsafeFileError, match=err(path) + expected[damage]):
        safe_load(str(path), 'checkpoint')


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        safe_load(str(tmp_path / 'nope.pt'), 'checkpoint')


def test_numpy_arrays_only_when_admitted(tmp_path):
    path = tmp_path / 'np.pt'
    torch.save({'state': np.arange(4, dtype=np.uint32)}, path)
    with pytest.raises(UnsafeFileError, match=r"numpy\._?core\.multiarray\._reconstruct"):
        safe_load(str(path))
    out = safe_load(str(path), allowed=(np.ndarray, ), allowed_globals=numpy_globals())
    assert out['state'].tolist() == [0, 1, 2, 3]
    torch.save({'state': np.array([{'a': 1}], dtype=object)}, path)
    with pytest.raises(UnsafeFileError, match=r'ObjectDType|numpy array of Python objects'):
        safe_load(str(path), allowed=(np.ndarray, ), allowed_globals=numpy_globals())
    assert osp.exists(path)
