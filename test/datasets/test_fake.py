import pytest
import torch

from torch_mmkg.data import get_triples, validate_mmkg
from torch_mmkg.datasets.fake import FakeMMKGDataset
from torch_mmkg.transforms import DropModality


def test_shapes_and_layout():
    dataset = FakeMMKGDataset()
    assert len(dataset) == 1
    data = dataset[0]
    validate_mmkg(data)
    ent = data['entity']
    assert ent.num_nodes == 500 and data.num_relations == 8
    assert data.modalities == ['image', 'text']
    assert ent.x_image.shape == (500, 32) and ent.x_text.shape == (500, 16)
    assert ent.cluster.shape == (500, ) and data.cluster_map.shape == (8, 10)
    assert torch.equal(torch.bincount(ent.cluster), torch.full((10, ), 50))
    for m in ('image', 'text'):
        mask = ent[f'mask_{m}']
        assert int((~mask).sum()) == 100
        assert bool((ent[f'x_{m}'][~mask] == 0).all())
    assert not torch.equal(ent.mask_image, ent.mask_text)  # chosen independently

    store = data['entity', 'relation', 'entity']
    assert store.edge_index.size(1) == 5000
    assert int(store.val_mask.sum()) == 500 and int(store.test_mask.sum()) == 500
    h, r, t = get_triples(data, 'all')
    assert len(set(zip(h.tolist(), r.tolist(), t.tolist()))) == 5000  # distinct
    assert set(r.tolist()) == set(range(8))
    assert 'FakeMMKGDataset(num_entities=500' in repr(dataset)


def test_planted_relation_signal():
    data = FakeMMKGDataset(num_entities=300, num_relations=5, num_clusters=7,
                           num_triples=3000, seed=3)[0]
    cluster, cluster_map = data['entity'].cluster, data.cluster_map
    for r in range(5):
        assert sorted(cluster_map[r].tolist()) == list(range(7))  # a permutation
    h, r, t = get_triples(data, 'all')
    assert torch.equal(cluster[t], cluster_map[r, cluster[h]])


@pytest.mark.parametrize('noise,min_acc', [(0.1, 0.99), (1.0, 0.8)])
def test_planted_feature_signal(noise, min_acc):
    data = FakeMMKGDataset(num_entities=2000, num_triples=2000, noise=noise, seed=1)[0]
    ent = data['entity']
    for m in ('image', 'text'):
        x, mask, y = ent[f'x_{m}'], ent[f'mask_{m}'], ent.cluster
        idx = mask.nonzero().view(-1)
        fit, held = idx[:idx.numel() // 2], idx[idx.numel() // 2:]
        means = torch.stack([x[fit][y[fit] == c].mean(0) for c in range(10)])
        pred = torch.cdist(x[held], means).argmin(dim=1)
        acc = (pred == y[held]).float().mean().item()
        assert acc > min_acc, (m, acc)
    # Without the signal (shuffled labels) the classifier is at chance level:
    y = ent.cluster[torch.randperm(2000, generator=torch.Generator().manual_seed(0))]
    x, idx = ent.x_text, ent.mask_text.nonzero().view(-1)
    fit, held = idx[:idx.numel() // 2], idx[idx.numel() // 2:]
    means = torch.stack([x[fit][y[fit] == c].mean(0) for c in range(10)])
    acc = (torch.cdist(x[held], means).argmin(dim=1) == y[held]).float().mean().item()
    assert acc < 0.2


def test_determinism():
    a, b = FakeMMKGDataset(seed=5)[0], FakeMMKGDataset(seed=5)[0]
    c = FakeMMKGDataset(seed=6)[0]
    for key in ('x_image', 'mask_image', 'x_text', 'cluster'):
        assert torch.equal(a['entity'][key], b['entity'][key])
        assert not torch.equal(a['entity'][key], c['entity'][key])
    sa, sb = a['entity', 'relation', 'entity'], b['entity', 'relation', 'entity']
    for key in ('edge_index', 'edge_type', 'train_mask', 'val_mask', 'test_mask'):
        assert torch.equal(sa[key], sb[key])
    assert not torch.equal(sa.edge_index, c['entity', 'relation', 'entity'].edge_index)


def test_options_and_transforms():
    dataset = FakeMMKGDataset(num_entities=103, num_relations=2, num_clusters=4,
                              num_triples=400, modalities={'audio': 3}, missing_rate=0.0,
                              val_ratio=0.0, test_ratio=0.25, noise=0.0,
                              transform=DropModality(0.5, seed=0))
    data = dataset[0]
    validate_mmkg(data)
    assert data.modalities == ['audio']
    assert int(data['entity'].mask_audio.sum()) == 103 - 52
    store = data['entity', 'relation', 'entity']
    assert int(store.val_mask.sum()) == 0 and int(store.test_mask.sum()) == 100
    assert sorted(torch.bincount(data['entity'].cluster).tolist()) == [25, 26, 26, 26]
    assert bool(dataset.get(0)["entity"].mask_audio.all())  # transform on access only

    pre = FakeMMKGDataset(num_entities=50, num_triples=100,
                          pre_transform=DropModality(1.0, seed=0))
    assert not bool(pre[0]['entity'].mask_image.any())


def test_triple_budget():
    # 2 relations x (5 clusters x 4 members^2) = 160 distinct triples at most.
    data = FakeMMKGDataset(num_entities=20, num_relations=2, num_clusters=5,
                           num_triples=160)[0]
    h, r, t = get_triples(data, 'all')
    assert len(set(zip(h.tolist(), r.tolist(), t.tolist()))) == 160
    with pytest.raises(ValueError, match=r"'num_triples' must lie in \[1, 160\]"):
        FakeMMKGDataset(num_entities=20, num_relations=2, num_clusters=5, num_triples=161)


def test_errors():
    with pytest.raises(ValueError, match="'num_clusters'"):
        FakeMMKGDataset(num_entities=5, num_clusters=6)
    with pytest.raises(ValueError, match="'num_relations'"):
        FakeMMKGDataset(num_relations=0)
    with pytest.raises(ValueError, match="'missing_rate'"):
        FakeMMKGDataset(missing_rate=1.5)
    with pytest.raises(ValueError, match="'val_ratio' \\+ 'test_ratio'"):
        FakeMMKGDataset(val_ratio=0.6, test_ratio=0.6)
    with pytest.raises(ValueError, match="'noise'"):
        FakeMMKGDataset(noise=-1.0)
    with pytest.raises(ValueError, match='lower-case identifier'):
        FakeMMKGDataset(modalities={'Image': 4})
    with pytest.raises(ValueError, match='positive dimension'):
        FakeMMKGDataset(modalities={'image': 0})
