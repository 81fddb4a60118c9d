import os.path as osp
import warnings

import pytest
import torch

from torch_mmkg.data import get_triples, read_openke_triples
from torch_mmkg.datasets.wildkgc import NATIVE_COMMIT
from torch_mmkg.evaluation import CATEGORIES, relation_categories
from torch_mmkg.testing import mirror_dir, onlyFullTest, withMirror


def brute_force(triples, R, threshold=1.5):
    r"""OpenKE's n-n.py rule on distinct triples, with plain loops."""
    triples = set(triples)
    out = []
    for rel in range(R):
        tails_of, heads_of = {}, {}
        for h, r, t in triples:
            if r == rel:
                tails_of.setdefault(h, set()).add(t)
                heads_of.setdefault(t, set()).add(h)
        if not tails_of:
            out.append(0)
            continue
        tph = sum(len(v) for v in tails_of.values()) / len(tails_of)
        hpt = sum(len(v) for v in heads_of.values()) / len(heads_of)
        out.append({(False, False): 0, (True, False): 1, (False, True): 2,
                    (True, True): 3}[(tph >= threshold, hpt >= threshold)])
    return out


def test_hand_made():
    assert CATEGORIES == ['1-1', '1-N', 'N-1', 'N-N']
    triples = [
        (0, 0, 1), (2, 0, 3), (4, 0, 5),  # r0 1-1: tph = hpt = 1
        (0, 1, 1), (0, 1, 2), (0, 1, 3), (4, 1, 5),  # r1 1-N: tph = 2, hpt = 1
        (1, 2, 0), (2, 2, 0), (3, 2, 0), (5, 2, 4),  # r2 N-1: tph = 1, hpt = 2
        (0, 3, 2), (0, 3, 3), (1, 3, 2), (1, 3, 3),  # r3 N-N: tph = hpt = 2
        # r4 has no triples: 1-1
        (0, 5, 1), (0, 5, 2), (3, 5, 4),  # r5: tph = 1.5 exactly (>= threshold): 1-N
        (0, 6, 1), (0, 6, 2), (3, 6, 1), (3, 6, 2), (5, 6, 4),  # r6: tph = hpt = 5/3
    ]
    R = 7
    # Duplicates are counted once.
    h, r, t = torch.tensor(triples + triples[3:5] * 3 + triples[:1]).T
    cat = relation_categories(h, r, t, R)
    assert cat.dtype == torch.long and cat.shape == (R, )
    assert [CATEGORIES[c] for c in cat.tolist()] == ['1-1', '1-N', 'N-1', 'N-N', '1-1', '1-N',
                                                     'N-N']
    assert cat.tolist() == brute_force(triples, R)
    # The threshold moves the boundary.
    assert relation_categories(h, r, t, R, threshold=2.5).tolist() == [0] * R
    assert relation_categories(h, r, t, R, threshold=1.0).tolist() == [3] * 4 + [0] + [3] * 2
    assert relation_categories(h, r, t, R, threshold=1.6).tolist() == brute_force(
        triples, R, 1.6)


def test_random():
    gen = torch.Generator().manual_seed(0)
    N, R, T = 40, 12, 600
    h = torch.randint(0, N, (T, ), generator=gen)
    r = torch.randint(0, R, (T, ), generator=gen)
    # Skew the relations so that all four categories occur.
    t = torch.where(r % 4 == 0, h, torch.randint(0, N, (T, ), generator=gen))
    t = torch.where(r % 4 == 1, torch.randint(0, 3, (T, ), generator=gen), t)
    h = torch.where(r % 4 == 2, torch.randint(0, 3, (T, ), generator=gen), h)
    cat = relation_categories(h, r, t, R)
    ref = brute_force(zip(h.tolist(), r.tolist(), t.tolist()), R)
    assert cat.tolist() == ref
    assert set(ref) == {0, 1, 2, 3}


# Real data ####################################################################################

FILES = {'1-1': '1-1.txt', '1-N': '1-n.txt', 'N-1': 'n-1.txt', 'N-N': 'n-n.txt'}


def mkgw_benchmark_dir():
    return osp.join(mirror_dir(), 'zjukg', 'NATIVE', NATIVE_COMMIT, 'benchmarks', 'MKG-W')


def check_against_openke_files(h, r, t, th, tr, tt, R):
    r"""The category of each test triple reproduces OpenKE's 1-1/1-n/n-1/n-n.txt files (first
    line the count, then ``head tail relation`` rows), as multisets of test triples."""
    cat = relation_categories(h, r, t, R)
    ours = {name: sorted((a, c, b) for a, b, c in zip(th.tolist(), tr.tolist(), tt.tolist())
                         if CATEGORIES[int(cat[b])] == name) for name in CATEGORIES}
    base = mkgw_benchmark_dir()
    for name, fname in FILES.items():
        with open(osp.join(base, fname)) as f:
            lines = f.read().split('\n')
        count = int(lines[0])
        rows = sorted(tuple(map(int, line.split())) for line in lines[1:] if line.strip())
        assert len(rows) == count
        assert ours[name] == rows, name
    return {name: len(v) for name, v in ours.items()}


@withMirror
def test_mkgw_openke_files_raw():
    # Fast: the OpenKE files from the mirror, no dataset processing.
    base = mkgw_benchmark_dir()
    if not osp.isdir(base):
        pytest.skip(f'{base} is not mirrored')
    N, R = 15000, 169
    splits = [read_openke_triples(osp.join(base, f'{s}2id.txt'), N, R, order='htr')
              for s in ('train', 'valid', 'test')]
    h, r, t = torch.cat(splits).T
    th, tr, tt = splits[2].T
    sizes = check_against_openke_files(h, r, t, th, tr, tt, R)
    assert sizes == {'1-1': 247, '1-N': 18, 'N-1': 2991, 'N-N': 1018}


@onlyFullTest
@withMirror
def test_mkgw_openke_files_dataset(tmp_path):
    from torch_mmkg.datasets import MKGW
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        data = MKGW(str(tmp_path / 'MKGW'), text_encoder=None, log=False)[0]
    h, r, t = get_triples(data, 'all')
    th, tr, tt = get_triples(data, 'test')
    # MKG-W has no duplicate triple across or within splits, so OpenKE's per-row counting
    # (n-n.py appends duplicates) and the distinct counting agree.
    key = (h * data.num_relations + r) * data['entity'].num_nodes + t
    assert key.unique().numel() == key.numel()
    sizes = check_against_openke_files(h, r, t, th, tr, tt, data.num_relations)
    assert sum(sizes.values()) == 4274
