r"""No file a dataset root holds runs code: every file of ``processed/`` (the cache, the records
of pre_transform/pre_filter, the text-feature cache) and every feature file is read without
unpickling classes; a planted payload is refused with an error naming the file."""
import glob
import os
import os.path as osp
import pickle
import warnings

import numpy as np
import pytest
import torch

from torch_mmkg.data import ENTITY
from torch_mmkg.data.serialization import UnsafeFileError
from torch_mmkg.datasets.folder import MMKGFolder
from torch_mmkg.testing import PlantedPayload, withMirror

from test_folder import N, TEXT, make_labelled  # noqa: E402 (the sibling test module)


def _folder(tmp_path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return MMKGFolder(str(tmp_path), **kwargs)


def _processed(tmp_path, pattern):
    paths = glob.glob(osp.join(str(tmp_path), 'processed', pattern))
    assert len(paths) == 1, paths
    return paths[0]


def test_cache_holds_plain_data_only(tmp_path):
    make_labelled(str(tmp_path))
    ds = _folder(tmp_path)
    path = _processed(tmp_path, 'mmkg_*.pt')
    # No class reference at all: PyTorch's restricted unpickler reads it with nothing added.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    again = _folder(tmp_path)
    assert torch.equal(again[0][ENTITY].x_text, ds[0][ENTITY].x_text)
    assert torch.equal(again[0][ENTITY].x_text, TEXT)
    assert again[0].modalities == ds[0].modalities and again[0][ENTITY].num_nodes == N


@pytest.mark.parametrize('name', ['pre_transform.pt', 'pre_filter.pt', 'cache'])
def test_planted_processed_file_does_not_run(tmp_path, name):
    make_labelled(str(tmp_path))
    _folder(tmp_path)
    path = (_processed(tmp_path, 'mmkg_*.pt') if name == 'cache' else
            osp.join(str(tmp_path), 'processed', name))
    assert osp.exists(path)
    marker = tmp_path / 'pwned'
    torch.save({'data': PlantedPayload(marker)}, path)
    with pytest.raises(UnsafeFileError, match=f"{path}: cannot read the .*: it refers to the "
                       f"Python object '(posix|nt).system'"):
        _folder(tmp_path)
    assert not marker.exists()
    # force_reload rebuilds the cache without reading what is there.
    ds = _folder(tmp_path, force_reload=True)
    assert not marker.exists() and torch.equal(ds[0][ENTITY].x_text, TEXT)


def test_cache_with_classes_is_refused_not_retried(tmp_path):
    # PyG's loader falls back to an unsafe load when the safe one fails; ours refuses files
    # that are not plain data, even of classes on PyTorch's allowlist (here PyG's own).
    make_labelled(str(tmp_path))
    ds = _folder(tmp_path)
    path = _processed(tmp_path, 'mmkg_*.pt')
    torch.save((ds._data.to_dict(), None, type(ds._data)), path)  # PyG's format
    with pytest.raises(UnsafeFileError, match=fr"{path}: holds the class "
                       fr"torch_geometric.data.hetero_data.HeteroData at \[2\]"):
        _folder(tmp_path)
    torch.save({'format': 'something else'}, path)
    with pytest.raises(UnsafeFileError, match=f"{path}: not a processed dataset written by "
                       f"this version of torch_mmkg"):
        _folder(tmp_path)


def test_pre_transform_record_must_be_text(tmp_path):
    make_labelled(str(tmp_path))
    _folder(tmp_path)
    path = osp.join(str(tmp_path), 'processed', 'pre_transform.pt')
    torch.save(['not', 'a', 'string'], path)
    with pytest.raises(UnsafeFileError, match=f"{path}: expected the text of the "
                       f"pre_transform"):
        _folder(tmp_path)


@pytest.mark.parametrize('kind', ['torch', 'pickle', 'npy'])
def test_planted_feature_file_does_not_run(tmp_path, kind):
    raw = make_labelled(str(tmp_path))
    marker = tmp_path / 'pwned'
    fdir = osp.join(raw, 'features')
    if kind == 'torch':
        path = osp.join(fdir, 'text.pt')
        torch.save(PlantedPayload(marker), path)
        expected = f"{path}: cannot read the tensor file: it refers to the Python object"
    elif kind == 'pickle':  # a .pkl next to the features is refused, not skipped
        path = osp.join(fdir, 'audio.pkl')
        with open(path, 'wb') as f:
            pickle.dump(PlantedPayload(marker), f)
        expected = f"{path}: .pkl files are refused because loading a pickle can run code"
    else:
        path = osp.join(fdir, 'numeric.npy')
        np.save(path, np.array([PlantedPayload(marker)], dtype=object), allow_pickle=True)
        expected = f"{path}: not a plain numpy array"
    with pytest.raises(ValueError, match=expected):
        _folder(tmp_path)
    assert not marker.exists()


def test_unknown_file_in_features_folder_is_an_error(tmp_path):
    raw = make_labelled(str(tmp_path))
    path = osp.join(raw, 'features', 'image.csv')
    with open(path, 'w') as f:
        f.write('1,2\n')
    with pytest.raises(ValueError, match=f"{path}: this file type is not read. features/ "
                       f"holds <modality>.pt"):
        _folder(tmp_path)
    os.remove(path)
    with open(osp.join(raw, 'features', '.DS_Store'), 'w') as f:  # hidden files are fine
        f.write('x')
    assert _folder(tmp_path)[0].modalities == ['image', 'numeric', 'text']


class _Encoder:
    r"""A tiny deterministic sentence encoder (the text cache only needs .encode and .name)."""
    name = 'stub'

    def encode(self, texts, **kwargs):
        return torch.stack([torch.tensor([len(t), sum(map(ord, t)) % 97, 1.0]) for t in texts])


@withMirror
def test_planted_text_cache_of_a_dataset_does_not_run(tmp_path):
    from torch_mmkg.datasets import TIVA
    root = str(tmp_path / 'TIVA')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ds = TIVA(root, text_encoder=_Encoder(), log=False)
    assert ds[0].modalities == ['text']
    text_cache = _processed(root, 'text_stub_*.pt')
    data_cache = _processed(root, 'data_*.pt')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(data_cache) == []
    marker = tmp_path / 'pwned'
    torch.save({'x': PlantedPayload(marker), 'mask': torch.ones(1)}, text_cache)
    os.remove(data_cache)  # processing again reads the text cache
    with pytest.raises(UnsafeFileError, match=f"{text_cache}: cannot read the text feature "
                       f"cache: it refers to the Python object"):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            TIVA(root, text_encoder=_Encoder(), log=False)
    assert not marker.exists()
