import pytest
import torch
from torch.utils.data.datapipes.iter import IterableWrapper

from torch_mmkg.data import build_mmkg, validate_mmkg
from torch_mmkg.transforms import PoolModality


def make_graph(num_entities=30, num_instances=80, seed=0):
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack([torch.randint(num_entities, (20, ), generator=gen),
                           torch.zeros(20, dtype=torch.long),
                           torch.randint(num_entities, (20, ), generator=gen)], dim=1)
    data = build_mmkg(num_entities, 1, {'train': triples[:10], 'val': triples[10:15],
                                        'test': triples[15:]},
                      {'text': torch.randn(num_entities, 4, generator=gen)})
    data['image'].x = torch.randn(num_instances, 6, generator=gen)
    # Entities 0..num_entities-6 get instances; the last five have none. Instance 0 is unlinked.
    entity = torch.randint(num_entities - 5, (num_instances - 1, ), generator=gen)
    data['image', 'of', 'entity'].edge_index = torch.stack(
        [torch.arange(1, num_instances), entity])
    data['entity', 'has', 'image'].edge_index = torch.stack(
        [entity, torch.arange(1, num_instances)])
    return data


def naive(data, reduce):
    x = data['image'].x
    src, dst = data['image', 'of', 'entity'].edge_index.tolist()
    N = data['entity'].num_nodes
    out = torch.zeros(N, x.size(1))
    for e in range(N):
        rows = [x[i] for i, d in zip(src, dst) if d == e]
        if rows:
            stack = torch.stack(rows)
            out[e] = {'mean': stack.mean(0), 'sum': stack.sum(0),
                      'max': stack.max(0).values}[reduce]
    return out


@pytest.mark.parametrize('reduce', ['mean', 'sum', 'max'])
def test_pool_matches_naive(reduce):
    data = make_graph()
    out = PoolModality('image', 'image', reduce=reduce)(data)
    validate_mmkg(out)
    assert torch.allclose(out['entity'].x_image, naive(data, reduce), atol=1e-6)
    has = torch.zeros(30, dtype=torch.bool)
    has[data['image', 'of', 'entity'].edge_index[1]] = True
    assert torch.equal(out['entity'].mask_image, has)
    assert not bool(has[-5:].any())
    assert bool((out['entity'].x_image[~has] == 0).all())
    assert out.modalities == ['text', 'image']
    assert 'image' not in out.node_types
    assert out.edge_types == [('entity', 'relation', 'entity')]
    # Input unchanged:
    assert data.modalities == ['text']
    assert 'image' in data.node_types and len(data.edge_types) == 3
    assert 'x_image' not in data['entity']


def test_duplicate_links_and_functional():
    data = make_graph()
    ei = data['image', 'of', 'entity'].edge_index
    data['image', 'of', 'entity'].edge_index = torch.cat([ei, ei[:, :1]], dim=1)
    out = list(IterableWrapper([data]).pool_modality('image', 'visual'))[0]
    assert torch.allclose(out['entity'].x_visual, naive(data, 'mean'), atol=1e-6)
    assert repr(PoolModality('image', 'visual')) == \
        "PoolModality('image', 'visual', reduce='mean')"


def test_errors():
    with pytest.raises(ValueError, match="'reduce'"):
        PoolModality('image', 'image', reduce='min')
    with pytest.raises(ValueError, match='lower-case identifier'):
        PoolModality('image', 'Image')

    with pytest.raises(ValueError, match="no instance node type 'photo'"):
        PoolModality('photo', 'photo')(make_graph())
    data = make_graph()
    del data['image', 'of', 'entity']
    with pytest.raises(ValueError, match=r"no edge type \('image', 'of', 'entity'\)"):
        PoolModality('image', 'image')(data)
    with pytest.raises(ValueError, match="Modality 'text' already exists"):
        PoolModality('image', 'text')(make_graph())

    data = make_graph()
    data['image'].x[7, 2] = float('nan')
    with pytest.raises(ValueError, match='nan at instance 7, feature 2'):
        PoolModality('image', 'image')(data)
    data = make_graph()
    data['image'].x = data['image'].x.long()
    with pytest.raises(ValueError, match='2-d float tensor'):
        PoolModality('image', 'image')(data)

    data = make_graph()
    data['image', 'of', 'entity'].edge_index[0, 3] = 80
    with pytest.raises(ValueError, match=r'instance id 80 at link 3 is out of range \[0, 80\)'):
        PoolModality('image', 'image')(data)
    data = make_graph()
    data['image', 'of', 'entity'].edge_index[1, 5] = -1
    with pytest.raises(ValueError, match=r'entity id -1 at link 5 is out of range \[0, 30\)'):
        PoolModality('image', 'image')(data)
    data = make_graph()
    data['image', 'of', 'entity'].edge_index = data['image', 'of', 'entity'].edge_index.int()
    with pytest.raises(ValueError, match='torch.long'):
        PoolModality('image', 'image')(data)

    data = make_graph()
    src, dst = data['image', 'of', 'entity'].edge_index
    data['image'].x[src[dst == dst[0]]] = 0  # all instances of one entity are zero
    with pytest.raises(ValueError, match=f'Entity {int(dst[0])} has instances'):
        PoolModality('image', 'image')(data)
