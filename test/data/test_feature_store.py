r"""Disk-backed modality features (:mod:`torch_mmkg.data.feature_store`): what is read, the
fingerprint, the graph layer (validation, the converter) and :class:`MMKGFolder` with
:obj:`mmap=True`."""
import copy
import os
import os.path as osp
import pickle
import warnings

import numpy as np
import pytest
import torch

import torch_mmkg.data.feature_store as fs
from torch_mmkg.data import (ENTITY, build_mmkg, load_features, open_features, validate_mmkg,
                             write_features)
from torch_mmkg.data.feature_store import (DiskFeatures, DiskFeatureStore,
                                           FeaturesTooLargeError, full_read_limit,
                                           get_full_read_limit, set_full_read_limit,
                                           write_array)


@pytest.fixture
def x():
    return torch.randn(40, 6, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def feats(tmp_path, x):
    return write_array(x, str(tmp_path / 'x.npy'))


@pytest.fixture
def reads(monkeypatch):
    r"""Every positional read, as (offset, length) in bytes."""
    log = []
    original = fs._read_into

    def spy(fd, buf, offset, path):
        log.append((offset, len(buf)))
        return original(fd, buf, offset, path)
    monkeypatch.setattr(fs, '_read_into', spy)
    return log


def _fake_graph(seed=0):
    from torch_mmkg.datasets.fake import FakeMMKGDataset
    return FakeMMKGDataset(num_entities=20, num_relations=3, num_clusters=4, num_triples=120,
                           modalities={'image': 6, 'text': 5}, seed=seed)[0]


# -- DiskFeatures -----------------------------------------------------------------------------
def test_shape_questions(feats, x):
    assert feats.shape == x.shape == feats.size() and feats.size(1) == 6 and feats.size(-1) == 6
    assert feats.dtype == torch.float32 and feats.dim() == feats.ndim == 2
    assert len(feats) == 40 and feats.numel() == 240 and feats.nbytes == 960
    assert feats.row_bytes == 24 and feats.is_floating_point()
    assert feats.device == torch.device('cpu')
    assert repr(feats).startswith('DiskFeatures([40, 6], path=')
    assert torch.equal(torch.from_numpy(np.array(feats.array)), x)


def test_rows_reads_each_distinct_row_once_and_nothing_else(feats, x, reads):
    index = torch.tensor([[7, 3, 3], [39, 8, 7]])
    got = feats.rows(index)
    assert got.shape == (2, 3, 6) and torch.equal(got, x[index])
    # distinct rows {3, 7, 8, 39}: runs [3], [7, 8], [39] in three reads, sorted
    hdr = feats._offset
    assert reads == [(hdr + 3 * 24, 24), (hdr + 7 * 24, 48), (hdr + 39 * 24, 24)]
    assert (feats.stats.rows, feats.stats.bytes, feats.stats.calls) == (4, 96, 3)
    feats.stats.reset()
    assert torch.equal(feats.rows(torch.arange(10, 20)), x[10:20])
    assert (feats.stats.rows, feats.stats.calls) == (10, 1)  # one run, one read
    empty = feats.rows(torch.empty(0, 2, dtype=torch.long))
    assert empty.shape == (0, 2, 6)


def test_mmap_reader_reads_the_same_rows(feats, x):
    m = DiskFeatures(feats.path, reader='mmap')
    index = torch.tensor([[7, 3, 3], [39, 8, 7]])
    assert torch.equal(m.rows(index), x[index]) and m.stats.rows == 4
    assert torch.equal(m.read_all(), x) and torch.equal(m[5], x[5])
    assert torch.equal(list(m.chunks(32))[1][1], x[32:])
    assert pickle.loads(pickle.dumps(m)).reader == 'mmap'
    with pytest.raises(ValueError, match="reader must be 'pread' or 'mmap'"):
        DiskFeatures(feats.path, reader='read')


def test_rows_dtype_device_and_bad_ids(feats, x):
    assert feats.rows([1, 2], dtype=torch.float64).dtype == torch.float64
    assert torch.equal(feats.rows(np.array([5, 1])), x[[5, 1]])
    with pytest.raises(IndexError, match=r'row id 40 is out of range \[0, 40\)'):
        feats.rows(torch.tensor([0, 40]))
    with pytest.raises(IndexError, match='row id -1'):
        feats.rows(torch.tensor([-1]))
    with pytest.raises(TypeError, match='integer entity ids'):
        feats.rows(torch.tensor([0.0]))


def test_indexing_forms(feats, x):
    assert torch.equal(feats[3], x[3]) and torch.equal(feats[-1], x[-1])
    assert torch.equal(feats[2:9], x[2:9]) and torch.equal(feats[1:9:3], x[1:9:3])
    idx = torch.tensor([[4, 4], [0, 9]])
    assert torch.equal(feats[idx, 1:3], x[idx, 1:3])
    mask = torch.arange(40) % 7 == 0
    assert torch.equal(feats[mask], x[mask])
    assert torch.equal(feats[3, 2], x[3, 2])


def test_chunks_stream_every_row_in_order(feats, x):
    parts = list(feats.chunks(16))
    assert [s for s, _ in parts] == [0, 16, 32]
    assert [b.size(0) for _, b in parts] == [16, 16, 8]
    assert torch.equal(torch.cat([b for _, b in parts]), x)
    assert len(list(feats.chunks())) == 1  # 16 MiB blocks by default
    with pytest.raises(ValueError, match='positive number of rows'):
        next(feats.chunks(0))


def test_no_tensor_arithmetic_and_copies_share_the_file(feats, x):
    with pytest.raises(AttributeError, match=r'no tensor method \.float\(\).*read_all'):
        feats.float()
    with pytest.raises(TypeError, match='chunks'):
        iter(feats)
    assert copy.deepcopy(feats) is feats and copy.copy(feats) is feats
    again = pickle.loads(pickle.dumps(feats))
    assert again.path == feats.path and torch.equal(again.rows([0, 39]), x[[0, 39]])


def test_read_all_and_the_full_read_limit(feats, x, monkeypatch):
    assert torch.equal(feats.read_all(), x)
    with full_read_limit(959):
        with pytest.raises(FeaturesTooLargeError, match=r'all 40 rows .* \(960 B\) .* 959 B'):
            feats.read_all(what='a test')
        assert torch.equal(feats.rows(torch.arange(40)), x)  # rows are never limited
    with full_read_limit(960):
        assert torch.equal(feats.read_all(), x)
    monkeypatch.delenv(fs.ENV_FULL_READ_LIMIT, raising=False)
    assert get_full_read_limit() == fs.DEFAULT_FULL_READ_LIMIT
    monkeypatch.setenv(fs.ENV_FULL_READ_LIMIT, '100')
    assert get_full_read_limit() == 100
    monkeypatch.setenv(fs.ENV_FULL_READ_LIMIT, 'none')
    assert get_full_read_limit() is None
    monkeypatch.setenv(fs.ENV_FULL_READ_LIMIT, 'lots')
    with pytest.raises(ValueError, match='number of bytes'):
        get_full_read_limit()
    monkeypatch.delenv(fs.ENV_FULL_READ_LIMIT)
    old = set_full_read_limit(5)
    try:
        assert get_full_read_limit() == 5
    finally:
        fs._limit = fs._UNSET
    assert old == fs.DEFAULT_FULL_READ_LIMIT
    with pytest.raises(ValueError, match='non-negative'):
        set_full_read_limit(-1)


@pytest.mark.parametrize('make, match', [
    (lambda p: np.save(p, np.zeros((3, 2))), 'little-endian float32, found <f8'),
    (lambda p: np.save(p, np.zeros((3, 2), dtype='>f4')), 'found >f4'),
    (lambda p: np.save(p, np.zeros(3, dtype=np.float32)), r'\[N, F\]'),
    (lambda p: np.save(p, np.zeros((0, 2), dtype=np.float32)), 'no empty dimension'),
    (lambda p: np.save(p, np.asfortranarray(np.ones((3, 2), dtype=np.float32))),
     'Fortran order'),
    (lambda p: np.save(p, np.array([{}, 1], dtype=object), allow_pickle=True),
     'memory-mapped'),
    (lambda p: open(p, 'wb').write(b'not a numpy file'), 'memory-mapped'),
])
def test_files_refused(tmp_path, make, match):
    path = str(tmp_path / 'f.npy')
    make(path)
    with pytest.raises(ValueError, match=match):
        DiskFeatures(path)
    with pytest.raises(ValueError, match='no such feature file'):
        DiskFeatures(str(tmp_path / 'missing.npy'))


# -- fingerprint and scan ---------------------------------------------------------------------
def test_fingerprint_is_the_in_memory_digest_and_is_cached(tmp_path, feats, x):
    from torch_mmkg.nn.kge.base import _digest
    assert feats.fingerprint() == _digest(x)
    again = DiskFeatures(feats.path)  # the digest written with the file is in the cache
    assert again.fingerprint() == _digest(x) and again.is_finite()
    assert again.stats.rows == 0
    # a file of the digest's own (not from write_array): one streamed pass, then cached
    other = str(tmp_path / 'plain.npy')
    np.save(other, x.numpy())
    first = DiskFeatures(other)
    assert first.fingerprint() == _digest(x) and first.stats.rows == 40
    second = DiskFeatures(other)
    assert second.fingerprint() == _digest(x) and second.stats.rows == 0
    assert second.scan(refresh=True).sha256.startswith(_digest(x))
    assert second.stats.rows == 40


def test_fingerprint_changes_with_the_file(tmp_path, x):
    path = str(tmp_path / 'f.npy')
    np.save(path, x.numpy())
    before = DiskFeatures(path).fingerprint()
    y = x.clone()
    y[17, 2] += 1.0
    os.utime(path, ns=(1, 1))  # another version of the file with the same size
    np.save(path, y.numpy())
    stale = DiskFeatures(path)
    after = stale.fingerprint()
    assert after != before and len(after) == 16
    np.save(path, x.numpy())  # changed under an open DiskFeatures
    with pytest.raises(RuntimeError, match='changed since it was opened'):
        stale.fingerprint()
    assert DiskFeatures(path).fingerprint() == before


def test_scan_finds_nonfinite_values_and_zero_rows(tmp_path, x):
    y = x.clone()
    y[5] = 0
    y[30, 4] = float('nan')
    f = write_array(y, str(tmp_path / 'y.npy'))
    scan = DiskFeatures(f.path).scan()
    assert not scan.finite and scan.nonfinite[0] == (30, 4)
    assert scan.nonzero.tolist() == [i != 5 for i in range(40)]
    assert not DiskFeatures(f.path).is_finite()


def test_update_hash_streams_the_in_memory_bytes(feats, x):
    import hashlib
    h = hashlib.sha256()
    feats.update_hash(h)
    assert h.hexdigest() == feats.sha256()


def test_write_array_converts_like_tensor_float(tmp_path):
    x64 = torch.randn(7, 3, dtype=torch.float64)
    ints = np.arange(21, dtype=np.int64).reshape(7, 3)
    a = write_array(x64, str(tmp_path / 'a.npy'), chunk_bytes=12)  # one row per block
    b = write_array(ints, str(tmp_path / 'b.npy'))
    c = write_array(a, str(tmp_path / 'c.npy'))  # from disk to disk
    assert torch.equal(a.read_all(), x64.float())
    assert torch.equal(b.read_all(), torch.from_numpy(ints).float())
    assert torch.equal(c.read_all(), a.read_all()) and c.fingerprint() == a.fingerprint()
    with pytest.raises(ValueError, match='no empty dimension'):
        write_array(torch.zeros(3), str(tmp_path / 'd.npy'))
    assert not osp.exists(str(tmp_path / 'd.npy'))


# -- the graph layer --------------------------------------------------------------------------
def test_write_open_load_features_round_trip(tmp_path):
    data = _fake_graph()
    paths = write_features(data, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ['image.npy', 'image_mask.npy', 'text.npy',
                                            'text_mask.npy']
    assert paths == {m: str(tmp_path / f'{m}.npy') for m in ('image', 'text')}
    disk = open_features(data, str(tmp_path))
    assert isinstance(data[ENTITY].x_image, torch.Tensor)  # the original is left alone
    for m in ('image', 'text'):
        x = disk[ENTITY][f'x_{m}']
        assert isinstance(x, DiskFeatures)
        assert torch.equal(x.read_all(), data[ENTITY][f'x_{m}'])
        assert torch.equal(disk[ENTITY][f'mask_{m}'], data[ENTITY][f'mask_{m}'])
    assert validate_mmkg(disk) is disk
    back = load_features(disk)
    assert torch.equal(back[ENTITY].x_text, data[ENTITY].x_text)
    with pytest.raises(ValueError, match='exists; pass overwrite=True'):
        write_features(data, str(tmp_path))
    write_features(disk, str(tmp_path), overwrite=True)  # a disk graph onto its own files
    with pytest.raises(ValueError, match=r"modalities \['audio'\] are not in the graph"):
        write_features(data, str(tmp_path), ['audio'])
    other = _fake_graph()
    other[ENTITY].num_nodes = 21
    with pytest.raises(ValueError, match=r'expected \[21, F\] features, got \[20, 6\]'):
        open_features(other, str(tmp_path))


def test_validation_streams_and_names_the_problem(tmp_path):
    data = _fake_graph()
    x = data[ENTITY].x_image.clone()
    y = x.clone()
    y[11, 3] = float('inf')
    bad = copy.copy(data)
    bad[ENTITY].x_image = write_array(y, str(tmp_path / 'inf.npy'))
    with pytest.raises(ValueError, match=r'x_image holds inf at entity 11, feature 3.*inf\.npy'):
        validate_mmkg(bad)
    z = x.clone()
    present = int(data[ENTITY].mask_image.nonzero()[0])
    z[present] = 0
    bad[ENTITY].x_image = write_array(z, str(tmp_path / 'zero.npy'))
    with pytest.raises(ValueError, match=f'marks entity {present} as having modality '
                                         f"'image' but its feature row is all zeros"):
        validate_mmkg(bad)
    bad[ENTITY].x_image = write_array(x[:19], str(tmp_path / 'short.npy'))
    with pytest.raises(ValueError, match='has 19 rows but there are 20 entities'):
        validate_mmkg(bad)
    # the validation streams: with a limit of 0 bytes nothing is read whole
    write_features(data, str(tmp_path / 'ok'))
    disk = open_features(data, str(tmp_path / 'ok'))
    with full_read_limit(0):
        validate_mmkg(disk)


def test_build_mmkg_keeps_disk_features_and_infers_masks(tmp_path):
    x = torch.randn(5, 3)
    x[2] = 0
    f = write_array(x, str(tmp_path / 'v.npy'))
    data = build_mmkg(5, 1, {'train': [(0, 0, 1)], 'val': [(1, 0, 2)], 'test': [(2, 0, 3)]},
                      features={'visual': f})
    assert data[ENTITY].x_visual is f
    assert data[ENTITY].mask_visual.tolist() == [True, True, False, True, True]
    with pytest.raises(ValueError, match='No mask given'):
        build_mmkg(5, 1, {'train': [(0, 0, 1)]}, features={'visual': f}, infer_masks=False)


def test_pyg_feature_store_interfaces(tmp_path, reads):
    write_features(_fake_graph(), str(tmp_path))
    data = open_features(_fake_graph(), str(tmp_path))
    x = _fake_graph()[ENTITY].x_image
    reads.clear()
    # HeteroData is a PyG FeatureStore: get_tensor with an index reads only those rows
    got = data.get_tensor(ENTITY, 'x_image', index=torch.tensor([4, 2]))
    assert torch.equal(got, x[[4, 2]]) and [n for _, n in reads] == [24, 24]
    assert tuple(data.get_tensor_size(ENTITY, 'x_image')) == (20, 6)
    store = DiskFeatureStore.from_data(data, root=str(tmp_path / 'store'))
    assert {(a.group_name, a.attr_name) for a in store.get_all_tensor_attrs()} == {
        (ENTITY, 'x_image'), (ENTITY, 'x_text')}
    assert torch.equal(store[ENTITY, 'x_image', torch.tensor([1, 3])], x[[1, 3]])
    assert torch.equal(store.get_tensor(ENTITY, 'x_image', index=None), x)
    assert store.get_tensor_size(ENTITY, 'x_text') == (20, 5)
    a, b = store.multi_get_tensor([(ENTITY, 'x_image', torch.tensor([0])),
                                   (ENTITY, 'x_text', slice(2, 4))])
    assert torch.equal(a, x[:1]) and b.shape == (2, 5)
    # a tensor put is written to the root and read back row by row
    assert store.put_tensor(torch.ones(3, 2), group_name='rel', attr_name='x', index=None)
    assert osp.isfile(str(tmp_path / 'store' / 'rel' / 'x.npy'))
    assert isinstance(store.features('rel', 'x'), DiskFeatures)
    assert torch.equal(store['rel', 'x', torch.tensor([2])], torch.ones(1, 2))
    with pytest.raises(ValueError, match='read-only'):
        store.put_tensor(torch.ones(1, 2), group_name='rel', attr_name='x',
                         index=torch.tensor([0]))
    with full_read_limit(0), pytest.raises(FeaturesTooLargeError, match='without an index'):
        store.get_tensor(ENTITY, 'x_image', index=None)
    assert store.remove_tensor(group_name='rel', attr_name='x', index=None)
    assert store.get_tensor_size('rel', 'x') is None
    with pytest.raises(ValueError, match='root folder'):
        DiskFeatureStore().put_tensor(torch.ones(2, 2), group_name='g', attr_name='a',
                                      index=None)


def test_data_fingerprint_is_that_of_the_same_values_in_memory(tmp_path):
    from torch_mmkg.experiment import data_fingerprint
    data = _fake_graph()
    write_features(data, str(tmp_path))
    assert data_fingerprint(open_features(data, str(tmp_path))) == data_fingerprint(data)


# -- MMKGFolder(mmap=True) --------------------------------------------------------------------
N = 6


def _folder(tmp_path):
    r"""A labelled folder of 6 entities with four kinds of feature sources: a .pt file
    (converted), a float64 .npy with a mask (converted), rows keyed by an index file
    (converted) and a float32 .npy (opened in place)."""
    root = str(tmp_path / 'kg')
    raw = osp.join(root, 'raw')
    fdir = osp.join(raw, 'features')
    os.makedirs(fdir)
    files = {'train.txt': 'a\tr\tb\nc\tr\td\ne\ts\tf\na\ts\tb\n',
             'valid.txt': 'c\ts\td\n', 'test.txt': 'e\tr\tf\n',
             'features/image_index.txt': 'f\na\nc\n'}
    for name, text in files.items():
        with open(osp.join(raw, name), 'w', encoding='utf-8') as f:
            f.write(text)
    text = torch.arange(N * 3, dtype=torch.float).view(N, 3) + 1
    text[3] = 0
    torch.save(text, osp.join(fdir, 'text.pt'))
    np.save(osp.join(fdir, 'numeric.npy'), np.random.RandomState(0).rand(N, 2) + 0.5)
    np.save(osp.join(fdir, 'numeric_mask.npy'), np.array([1, 0, 1, 0, 0, 1], dtype=bool))
    torch.save(torch.arange(12, dtype=torch.float).view(3, 4) + 1,
               osp.join(fdir, 'image.pth'))
    vis = np.random.RandomState(1).rand(N, 4).astype(np.float32) + 0.1
    np.save(osp.join(fdir, 'vis.npy'), vis)
    return root, raw


def _load(root, **kwargs):
    from torch_mmkg.datasets import MMKGFolder
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        return MMKGFolder(root, **kwargs)


def test_folder_mmap_holds_the_same_graph_with_features_on_disk(tmp_path):
    root, raw = _folder(tmp_path)
    mem = _load(root)[0]
    ds = _load(root, mmap=True)
    disk = ds[0]
    assert disk.modalities == mem.modalities == ['image', 'numeric', 'text', 'vis']
    for m in disk.modalities:
        x = disk[ENTITY][f'x_{m}']
        assert isinstance(x, DiskFeatures), m
        assert torch.equal(x.read_all(), mem[ENTITY][f'x_{m}']), m
        assert torch.equal(disk[ENTITY][f'mask_{m}'], mem[ENTITY][f'mask_{m}']), m
    assert disk[ENTITY].x_vis.path == osp.join(raw, 'features', 'vis.npy')  # not copied
    converted = osp.dirname(disk[ENTITY].x_text.path)
    assert osp.dirname(converted) == ds.processed_dir
    assert sorted(os.listdir(converted)) == ['image.npy', 'numeric.npy', 'text.npy']
    assert repr(ds).endswith('vis(4d, 6/6)])')
    validate_mmkg(disk)


def test_folder_mmap_cache_holds_paths_not_features(tmp_path, monkeypatch):
    import json

    from torch_mmkg.data.serialization import safe_load
    from torch_mmkg.datasets import MMKGFolder
    root, _ = _folder(tmp_path)
    ds = _load(root, mmap=True)
    pt, record = ds.processed_paths
    cache = safe_load(pt)  # tensors and plain data only: nothing in it can run code
    keys = list(cache['data'][ENTITY])
    assert not [k for k in keys if k.startswith('x_')] and 'mask_vis' in keys
    with open(record, encoding='utf-8') as f:
        files = json.load(f)['features']
    assert files['vis'] == {'path': osp.join('raw', 'features', 'vis.npy'), 'shape': [6, 4]}
    assert not osp.isabs(files['text']['path'])
    # the second load reads the cache and the record, it does not process again
    monkeypatch.setattr(MMKGFolder, 'process', lambda self: pytest.fail('processed again'))
    again = _load(root, mmap=True)[0]
    assert again[ENTITY].x_vis.shape == (6, 4)
    # a cache of the in-memory graph is another file
    monkeypatch.undo()
    assert _load(root).processed_paths[0] != pt
    with open(record, 'w', encoding='utf-8') as f:
        f.write('{"format": "other"}')
    with pytest.raises(ValueError, match='not a record of memory-mapped features'):
        _load(root, mmap=True)


def test_folder_mmap_errors_name_the_file(tmp_path):
    root, raw = _folder(tmp_path)
    bad = np.ones((N + 1, 2), dtype=np.float32)
    np.save(osp.join(raw, 'features', 'vis.npy'), bad)
    with pytest.raises(ValueError, match=r'vis\.npy: 7 feature rows but the graph has 6'):
        _load(root, mmap=True)
    nan = np.ones((N, 2))
    nan[4, 1] = np.nan
    np.save(osp.join(raw, 'features', 'vis.npy'), nan)  # float64: converted
    with pytest.raises(ValueError, match=r'vis\.npy: row 4, feature 1 holds nan'):
        _load(root, mmap=True)
    with pytest.raises(ValueError, match='mmap must be True or False'):
        _load(root, mmap='yes')
