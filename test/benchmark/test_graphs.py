r"""Built graphs as single files (``benchmark/graphs.py``): a round trip gives the graph back
bit for bit, mostly-zero feature tables are stored as their non-zero entries, and a file of
another kind (or one that would run code) is refused, naming the file."""
import os.path as osp
import sys

import pytest
import torch
from torch import Tensor

ROOT = osp.join(osp.dirname(__file__), '..', '..', 'benchmark')
sys.path.insert(0, ROOT)
graphs = pytest.importorskip('graphs')

from torch_mmkg.data.serialization import UnsafeFileError  # noqa: E402
from torch_mmkg.datasets import FakeMMKGDataset  # noqa: E402


def _mostly_zero(rows, cols, nonzero, dtype=torch.float32, seed=0):
    r"""A table with exactly :obj:`nonzero` non-zero entries, negative ones among them."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(rows * cols, dtype=dtype)
    where = torch.randperm(rows * cols, generator=gen)[:nonzero]
    x[where] = (torch.randn(nonzero, generator=gen, dtype=torch.float64) * 3).to(dtype)
    x[where[0]] = -2.5  # surely negative
    return x.view(rows, cols)


def _graph():
    data = FakeMMKGDataset(num_entities=30, num_relations=3, num_clusters=3, num_triples=120,
                           modalities={'image': 6, 'text': 5}, missing_rate=0.3, seed=2)[0]
    data['entity'].x_numeric = _mostly_zero(30, 20, 60)  # 10% non-zero
    data['entity'].x_numeric64 = _mostly_zero(30, 4, 12, torch.float64, seed=1)
    data['entity'].x_empty = torch.zeros(30, 7)  # no non-zero at all
    data['entity'].counts = torch.zeros(30, 8, dtype=torch.long)  # integer: never sparse
    data['entity'].counts[0, 0] = 5
    data.title = 'a fake graph'
    data.names = ['first', 'second', 'third']
    data.weights = {'a': 1.5, 'b': [1, 2]}
    return data


def _assert_same(a, b, where=''):
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        # bit for bit: the bytes of the two tensors are equal
        assert torch.equal(a.contiguous().view(-1).view(torch.uint8),
                           b.contiguous().view(-1).view(torch.uint8)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f'{where}/{k}')
    else:
        assert type(a) is type(b) and a == b, where


def test_round_trip_is_exact(tmp_path):
    data = _graph()
    path = str(tmp_path / 'sub' / 'Fake.pt')  # the folder is created
    graphs.save_graph(data, path)
    out = graphs.load_graph(path)
    assert type(out) is type(data)
    _assert_same(data.to_dict(), out.to_dict())
    assert out['entity'].num_nodes == 30 and out.num_relations == 3
    assert out.modalities == ['image', 'text'] and out.names == data.names
    assert out['entity'].mask_image.dtype == torch.bool
    assert not out['entity'].mask_image.all()  # missing_rate 0.3: the masks are not trivial
    assert out['entity', 'relation', 'entity'].edge_index.dtype == torch.long
    x = out['entity'].x_numeric
    assert int(x.count_nonzero()) == 60 and bool((x < 0).any())
    assert int(out['entity'].x_empty.count_nonzero()) == 0


def test_mostly_zero_tables_are_stored_sparse(tmp_path):
    data = _graph()
    path = str(tmp_path / 'Fake.pt')
    graphs.save_graph(data, path)
    saved = torch.load(path, weights_only=True)
    assert saved['format'] == graphs.FORMAT
    entity = saved['data']['entity']
    for key, nonzero in (('x_numeric', 60), ('x_numeric64', 12), ('x_empty', 0)):
        packed = entity[key]
        assert isinstance(packed, dict) and packed['__sparse__'] is True, key
        assert packed['values'].numel() == nonzero, key
        assert packed['values'].dtype == data['entity'][key].dtype, key
        assert packed['index'].shape == (2, nonzero), key
        assert packed['shape'] == list(data['entity'][key].shape), key
    assert bool((entity['x_numeric']['values'] != 0).all())  # only the non-zeros are stored
    # dense floating tables, integer tables and masks stay tensors
    for key in ('x_image', 'x_text', 'counts', 'mask_image'):
        assert isinstance(entity[key], Tensor), key
    edges = saved['data'][('entity', 'relation', 'entity')]
    assert isinstance(edges['edge_index'], Tensor)


def test_density_threshold(tmp_path):
    from torch_geometric.data import HeteroData
    data = HeteroData()
    data['entity'].num_nodes = 4
    at = torch.zeros(4, 4)
    at.view(-1)[:int(graphs.SPARSE_DENSITY * 16)] = -1.0  # exactly SPARSE_DENSITY: sparse
    above = at.clone()
    above[3, 3] = 7.0  # one more: dense
    data['entity'].at, data['entity'].above = at, above
    data['entity'].x_flat = torch.zeros(16)  # 1-D: never sparse
    path = str(tmp_path / 'g.pt')
    graphs.save_graph(data, path)
    entity = torch.load(path, weights_only=True)['data']['entity']
    assert isinstance(entity['at'], dict) and isinstance(entity['above'], Tensor)
    assert isinstance(entity['x_flat'], Tensor)
    _assert_same(data.to_dict(), graphs.load_graph(path).to_dict())


def test_sparse_file_is_small(tmp_path):
    from torch_geometric.data import HeteroData
    sparse, dense = HeteroData(), HeteroData()
    sparse['entity'].x = _mostly_zero(400, 100, 400)  # 1% non-zero
    dense['entity'].x = torch.randn(400, 100)
    graphs.save_graph(sparse, str(tmp_path / 's.pt'))
    graphs.save_graph(dense, str(tmp_path / 'd.pt'))
    assert osp.getsize(tmp_path / 's.pt') < osp.getsize(tmp_path / 'd.pt') / 10


@pytest.mark.parametrize('obj', [
    {'format': 'torch_mmkg.benchmark.graph/0', 'data': {}},
    {'data': {}},
    [1, 2, 3],
    torch.zeros(3),
], ids=['other_format', 'no_format', 'list', 'tensor'])
def test_other_files_are_refused(tmp_path, obj):
    path = str(tmp_path / 'other.pt')
    torch.save(obj, path)
    with pytest.raises(UnsafeFileError) as e:
        graphs.load_graph(path)
    assert path in str(e.value)
    assert graphs.FORMAT in str(e.value)  # it says what was expected
    if isinstance(obj, dict) and 'format' in obj:
        assert obj['format'] in str(e.value)  # and what it found


def test_garbage_is_refused(tmp_path):
    path = tmp_path / 'garbage.pt'
    path.write_bytes(b'not a torch file at all')
    with pytest.raises(UnsafeFileError, match='garbage.pt'):
        graphs.load_graph(str(path))


class _RunsCode:
    r"""Unpickling this would call :func:`open` and create a file."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_code_in_the_file_is_not_run(tmp_path):
    marker = str(tmp_path / 'was_run')
    path = str(tmp_path / 'evil.pt')
    torch.save({'format': graphs.FORMAT, 'data': {'x': _RunsCode(marker)}}, path)
    assert not osp.exists(marker)
    with pytest.raises(UnsafeFileError) as e:
        graphs.load_graph(path)
    assert path in str(e.value)
    assert not osp.exists(marker)  # refused before anything was called
