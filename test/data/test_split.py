import glob
import os.path as osp
import warnings

import pytest
import torch

from torch_mmkg.data import (REL, add_clean_val_split, build_mmkg, clean_val_mask, get_triples,
                             read_openke_dict, read_openke_triples, split_issues, split_report,
                             validate_mmkg)
from torch_mmkg.testing import mirror_dir, withMirror

# A tiny graph with known flaws. Entities 0-3 occur in training, 4-6 only in val/test and 7
# nowhere; relation 2 only in test.
TRAIN = [(0, 0, 1), (1, 1, 2), (2, 0, 3), (0, 0, 1)]  # one duplicate row
VAL = [
    (0, 0, 1),  # also in train
    (3, 1, 0),  # first occurrence: clean
    (3, 1, 0),  # duplicate row
    (4, 0, 1),  # unseen entity 4: clean (not in train)
    (1, 1, 2),  # also in train
]
TEST = [
    (3, 1, 0),  # also in val
    (5, 2, 6),  # unseen entities 5, 6 and unseen relation 2
    (2, 0, 3),  # also in train
    (4, 1, 5),  # unseen entities 4, 5
]
N, R = 8, 3


def tiny():
    return build_mmkg(N, R, {'train': torch.tensor(TRAIN), 'val': torch.tensor(VAL),
                             'test': torch.tensor(TEST)})


def clean_tiny():
    return build_mmkg(5, 2, {'train': torch.tensor([(0, 0, 1), (1, 1, 2), (2, 0, 3), (3, 1, 4)]),
                             'val': torch.tensor([(1, 0, 3), (4, 0, 0)]),
                             'test': torch.tensor([(2, 1, 0)])})


def test_split_report_exact():
    report = split_report(tiny())
    assert report == {
        'rows': {'train': 4, 'val': 5, 'test': 4},
        'distinct': {'train': 3, 'val': 4, 'test': 4},
        'duplicates': {'train': 1, 'val': 1, 'test': 0},
        'overlap': {'val&train': 2, 'test&train': 1, 'test&val': 1},
        'unseen_entities': {'val': 1, 'test': 3},
        'triples_with_unseen_entities': {'val': 1, 'test': 2},
        'unseen_relations': {'val': 0, 'test': 1},
        'entities_absent_from_train': 4,
        'val_clean': 2,
    }


def test_split_report_clean_graph():
    report = split_report(clean_tiny())
    assert report['duplicates'] == {'train': 0, 'val': 0, 'test': 0}
    assert report['overlap'] == {'val&train': 0, 'test&train': 0, 'test&val': 0}
    assert report['unseen_entities'] == {'val': 0, 'test': 0}
    assert report['entities_absent_from_train'] == 0
    assert report['val_clean'] == 2
    assert split_issues(report) == []


def test_split_issues_sentences():
    issues = split_issues(split_report(tiny()))
    assert issues == [
        'train: 4 rows but 3 distinct triples (1 duplicate rows)',
        'val: 5 rows but 4 distinct triples (1 duplicate rows)',
        '2 distinct val triples also appear in train',
        '1 distinct test triples also appear in train',
        '1 distinct test triples also appear in val',
        '1 of 5 val triples touch one of 1 entities absent from training',
        '2 of 4 test triples touch one of 3 entities absent from training',
        '1 relations of test never occur in training',
    ]


def test_clean_val_mask():
    data = tiny()
    mask = clean_val_mask(data)
    assert mask.dtype == torch.bool and mask.shape == data[REL].val_mask.shape
    # Rows 4..8 are val; keep row 5 (first (3, 1, 0), not its duplicate at 6) and row 7.
    assert mask.nonzero().view(-1).tolist() == [5, 7]
    assert not (mask & ~data[REL].val_mask).any()
    data[REL].val_clean_mask = mask
    h, r, t = get_triples(data, 'val_clean')
    assert torch.stack([h, r, t], 1).tolist() == [[3, 1, 0], [4, 0, 1]]
    train = set(TRAIN)
    assert not any(tuple(x) in train for x in torch.stack([h, r, t], 1).tolist())


def test_clean_val_mask_keeps_first_occurrence_in_file_order():
    val = [(2, 0, 0), (1, 0, 0), (2, 0, 0), (1, 0, 0), (0, 0, 1)]
    data = build_mmkg(3, 1, {'train': torch.tensor([(0, 0, 1), (1, 0, 2)]),
                             'val': torch.tensor(val)})
    # (0, 0, 1) is a training triple; first (2, 0, 0) is row 2, first (1, 0, 0) is row 3.
    assert clean_val_mask(data).nonzero().view(-1).tolist() == [2, 3]


def test_clean_val_mask_empty_val():
    data = build_mmkg(3, 1, {'train': torch.tensor([(0, 0, 1)])})
    mask = clean_val_mask(data)
    assert mask.shape == (1, ) and not mask.any()
    assert split_report(data)['val_clean'] == 0


def test_add_clean_val_split_warns_when_unclean():
    data = tiny()
    before = {k: data[REL][k].clone() for k in ('train_mask', 'val_mask', 'test_mask')}
    with pytest.warns(UserWarning, match=r"tiny: the published split is not clean: train: 4 "
                                         r"rows but 3 distinct.*split 'val_clean' \(2 triples"):
        report = add_clean_val_split(data, name='tiny')
    assert report == split_report(data)
    assert data[REL].val_clean_mask.nonzero().view(-1).tolist() == [5, 7]
    for k, v in before.items():  # the published split is kept
        assert torch.equal(data[REL][k], v)
    validate_mmkg(data)


def test_add_clean_val_split_silent():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        data = clean_tiny()
        report = add_clean_val_split(data)
        assert report['val_clean'] == 2
        assert torch.equal(data[REL].val_clean_mask, data[REL].val_mask)
        data = tiny()
        add_clean_val_split(data, warn=False)  # asked not to warn
        assert int(data[REL].val_clean_mask.sum()) == 2


# -- the real benchmark files -----------------------------------------------------------------
def load_benchmark(name):
    hits = sorted(glob.glob(osp.join(mirror_dir(), 'zjukg', 'NATIVE', '*', 'benchmarks', name)))
    if not hits:
        pytest.skip(f"{name} is not in the local mirror")
    folder = hits[-1]
    ents = read_openke_dict(osp.join(folder, 'entity2id.txt'))
    rels = read_openke_dict(osp.join(folder, 'relation2id.txt'))
    triples = {s: read_openke_triples(osp.join(folder, f), len(ents), len(rels))
               for s, f in (('train', 'train2id.txt'), ('val', 'valid2id.txt'),
                            ('test', 'test2id.txt'))}
    return build_mmkg(len(ents), len(rels), triples, entity_names=ents, relation_names=rels)


@withMirror
def test_db15k_split_facts():
    data = load_benchmark('DB15K')
    report = split_report(data)
    assert report['rows']['val'] == 9904
    assert report['distinct']['val'] == 7481
    assert report['duplicates']['val'] == 9904 - 7481
    assert report['overlap']['val&train'] == 6584
    assert report['overlap']['test&val'] == 824
    assert report['val_clean'] == 7481 - 6584
    mask = clean_val_mask(data)
    assert int(mask.sum()) == 897
    assert not (mask & ~data[REL].val_mask).any()
    with pytest.warns(UserWarning, match=r"DB15K: the published split is not clean"):
        add_clean_val_split(data, name='DB15K')


@withMirror
def test_mkgw_unseen_entities():
    data = load_benchmark('MKG-W')
    report = split_report(data)
    assert report['rows']['test'] == 4274
    assert report['triples_with_unseen_entities']['test'] == 306
    assert report['entities_absent_from_train'] == 491
    assert report['duplicates'] == {'train': 0, 'val': 0, 'test': 0}
    assert report['overlap'] == {'val&train': 0, 'test&train': 0, 'test&val': 0}
