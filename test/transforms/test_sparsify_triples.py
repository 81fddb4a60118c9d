import numpy as np
import pytest
import torch
from torch.utils.data.datapipes.iter import IterableWrapper

from torch_mmkg.data import build_mmkg, get_triples, validate_mmkg
from torch_mmkg.transforms import SparsifyTriples


def make_graph(num_train=1000, num_val=100, num_test=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    total = num_train + num_val + num_test
    triples = torch.stack([torch.randint(200, (total, ), generator=gen),
                           torch.randint(5, (total, ), generator=gen),
                           torch.randint(200, (total, ), generator=gen)], dim=1)
    # Interleave the splits so that row positions matter:
    perm = torch.randperm(total, generator=gen)
    split = {'train': triples[perm[:num_train]],
             'val': triples[perm[num_train:num_train + num_val]],
             'test': triples[perm[num_train + num_val:]]}
    data = build_mmkg(200, 5, split, {'text': torch.randn(200, 3, generator=gen)})
    store = data['entity', 'relation', 'entity']
    order = torch.randperm(total, generator=gen)
    store.edge_index = store.edge_index[:, order]
    for key in ('edge_type', 'train_mask', 'val_mask', 'test_mask'):
        store[key] = store[key][order]
    store.weight = torch.arange(total, dtype=torch.float)
    store.label = [f'row{i}' for i in range(total)]
    return data


def rows(data, split):
    h, r, t = get_triples(data, split)
    return torch.stack([h, r, t], dim=1).tolist()


def test_exact_count_and_alignment():
    data = make_graph()
    store = data['entity', 'relation', 'entity']
    ei_before = store.edge_index.clone()
    out = SparsifyTriples(0.3, seed=0)(data)
    validate_mmkg(out)
    new = out['entity', 'relation', 'entity']
    assert int(new.train_mask.sum()) == 700
    assert new.edge_index.size(1) == 1220 - 300
    assert rows(out, 'val') == rows(data, 'val')  # kept, in order
    assert rows(out, 'test') == rows(data, 'test')
    train_before = rows(data, 'train')
    train_after = rows(out, 'train')
    assert all(t in train_before for t in train_after)
    # Per-edge attributes follow their rows: 'weight'/'label' hold the original row position.
    pos = new.weight.long()
    assert new.label == [f'row{i}' for i in pos.tolist()]
    assert torch.equal(new.edge_index, ei_before[:, pos])
    assert torch.equal(new.edge_type, store.edge_type[pos])
    for key in ('train_mask', 'val_mask', 'test_mask'):
        assert torch.equal(new[key], store[key][pos])
    assert bool((pos[1:] > pos[:-1]).all())  # order kept
    # Input unchanged:
    assert torch.equal(store.edge_index, ei_before)
    assert int(store.train_mask.sum()) == 1000


def test_val_clean_mask_and_duplicates():
    data = make_graph(num_train=50, num_val=20, num_test=20)
    store = data['entity', 'relation', 'entity']
    # Duplicate training rows count separately.
    train = store.train_mask.clone()
    store.edge_index = torch.cat([store.edge_index, store.edge_index[:, train]], dim=1)
    for key in ('edge_type', 'train_mask', 'val_mask', 'test_mask'):
        store[key] = torch.cat([store[key], store[key][train]])
    del store.weight
    del store.label
    store.val_clean_mask = store.val_mask & (torch.arange(store.val_mask.numel()) % 2 == 0)
    out = SparsifyTriples(0.5, seed=1)(data)
    validate_mmkg(out)
    new = out['entity', 'relation', 'entity']
    assert int(new.train_mask.sum()) == 50
    assert torch.equal(new.val_clean_mask[new.val_mask], store.val_clean_mask[store.val_mask])
    assert int(new.val_clean_mask.sum()) == int(store.val_clean_mask.sum()) > 0


def test_seed_and_extremes():
    data = make_graph()
    a = SparsifyTriples(0.5, seed=2)(data)
    b = SparsifyTriples(0.5, seed=2)(data)
    c = SparsifyTriples(0.5, seed=3)(data)
    assert rows(a, 'train') == rows(b, 'train')
    assert rows(a, 'train') != rows(c, 'train')
    assert rows(SparsifyTriples(0.0)(data), 'all') == rows(data, 'all')
    out = SparsifyTriples(1.0)(data)
    assert int(out['entity', 'relation', 'entity'].train_mask.sum()) == 0
    validate_mmkg(out)


def test_functional_and_errors():
    data = make_graph(num_train=10, num_val=2, num_test=2)
    out = list(IterableWrapper([data]).sparsify_triples(0.4, seed=0))[0]
    assert int(out['entity', 'relation', 'entity'].train_mask.sum()) == 6
    assert repr(SparsifyTriples(0.4, seed=0)) == 'SparsifyTriples(0.4, seed=0)'
    with pytest.raises(ValueError, match="'rate' must lie in"):
        SparsifyTriples(2.0)
    store = data['entity', 'relation', 'entity']
    store.extra = np.zeros(store.edge_index.size(1))
    with pytest.raises(ValueError, match="per-edge attribute 'extra' of type ndarray"):
        SparsifyTriples(0.5)(data)
