r"""The scale benchmark's generator: the planted signal, the OpenKE layout MMKGFolder reads,
features written block by block."""
import os.path as osp
import sys

import numpy as np
import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmark'))
scale = pytest.importorskip('scale')


def test_generator_plants_the_signal(tmp_path):
    folder = str(tmp_path / 'kg')
    sizes = scale.generate(folder, 500, dim=16, triples_per_entity=6, num_relations=3,
                           num_clusters=5, present=0.7, noise=0.1, holdout=0.05, seed=1,
                           block=64)  # several blocks
    cluster = np.load(osp.join(folder, 'clusters.npy'))
    rows = []
    for name in ('train2id.txt', 'valid2id.txt', 'test2id.txt'):
        with open(osp.join(folder, name)) as f:
            count = int(f.readline())
            part = np.loadtxt(f, dtype=np.int64, ndmin=2)
        assert len(part) == count
        rows.append(part)
    triples = np.concatenate(rows)  # head, tail, relation
    assert len(np.unique(triples, axis=0)) == len(triples)
    assert sizes['train'] + sizes['valid'] + sizes['test'] == len(triples)
    h, t, r = triples.T
    assert ((cluster[h] + r + 1) % 5 == cluster[t]).all()  # the planted rule
    x = np.load(osp.join(folder, 'features', 'image.npy'), mmap_mode='r')
    mask = np.load(osp.join(folder, 'features', 'image_mask.npy'))
    assert x.dtype == np.float32 and x.shape == (500, 16)
    assert not np.asarray(x[~mask]).any() and (np.abs(np.asarray(x[mask])).sum(1) > 0).all()
    # features of one cluster are close to each other, far from the others'
    xs = np.asarray(x)
    for c in range(5):
        own = xs[mask & (cluster == c)]
        centre = own.mean(0)
        other = xs[mask & (cluster != c)].mean(0)
        assert np.linalg.norm(own - centre, axis=1).max() < np.linalg.norm(centre - other)
    assert abs(mask.mean() - 0.7) < 0.1
    # a second call with the same parameters keeps the folder
    mtime = osp.getmtime(osp.join(folder, 'features', 'image.npy'))
    assert scale.generate(folder, 500, dim=16, triples_per_entity=6, num_relations=3,
                          num_clusters=5, present=0.7, noise=0.1, holdout=0.05,
                          seed=1) == sizes
    assert osp.getmtime(osp.join(folder, 'features', 'image.npy')) == mtime


def test_reference_mrr_is_the_brute_force_expectation(tmp_path):
    folder = str(tmp_path / 'kg')
    scale.generate(folder, 120, dim=4, triples_per_entity=5, num_relations=2,
                   num_clusters=4, holdout=0.1, seed=3)
    cluster = np.load(osp.join(folder, 'clusters.npy'))
    parts = [np.loadtxt(osp.join(folder, n), dtype=np.int64, skiprows=1, ndmin=2)
             for n in ('train2id.txt', 'valid2id.txt', 'test2id.txt')]
    known = {tuple(t) for t in np.concatenate(parts).tolist()}
    oracle, chance = [], []
    for h, t, r in parts[2].tolist():
        for side in ('tail', 'head'):
            answer = t if side == 'tail' else h
            # the filtered candidates: every entity but the query's other known answers
            cands = [e for e in range(120) if e == answer or
                     ((h, e, r) if side == 'tail' else (e, t, r)) not in known]
            m = sum(cluster[e] == cluster[answer] for e in cands)
            # the answer uniformly among the m (or all n) candidates: E[1/rank]
            oracle.append(np.mean([1.0 / k for k in range(1, m + 1)]))
            chance.append(np.mean([1.0 / k for k in range(1, len(cands) + 1)]))
    ref = scale.reference_mrr(folder)
    assert ref['oracle'] == pytest.approx(np.mean(oracle), rel=1e-12)
    assert ref['chance'] == pytest.approx(np.mean(chance), rel=1e-12)
    assert ref['chance'] < ref['oracle'] < 1
