import pytest
import torch
from torch.utils.data.datapipes.iter import IterableWrapper

from torch_mmkg.data import build_mmkg, validate_mmkg
from torch_mmkg.transforms import DropModality


def make_graph(num_entities=1000, dims=None, missing=None, seed=0):
    dims = dims or {'image': 8, 'text': 4, 'numeric': 3}
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack([torch.randint(num_entities, (50, ), generator=gen),
                           torch.randint(3, (50, ), generator=gen),
                           torch.randint(num_entities, (50, ), generator=gen)], dim=1)
    features, masks = {}, {}
    for m, dim in dims.items():
        x = torch.randn(num_entities, dim, generator=gen) * 2.0 + 5.0
        mask = torch.ones(num_entities, dtype=torch.bool)
        if missing and m in missing:
            mask[missing[m]] = False
            x[~mask] = 0
        features[m], masks[m] = x, mask
    return build_mmkg(num_entities, 3, {'train': triples[:40], 'val': triples[40:45],
                                        'test': triples[45:]}, features, masks)


def clone_entity(data):
    return {k: v.clone() for k, v in data['entity'].items() if torch.is_tensor(v)}


def stacked_masks(data, modalities):
    return torch.stack([data['entity'][f'mask_{m}'] for m in modalities], dim=1)


def test_entity_level_exact_count():
    data = make_graph()
    before = clone_entity(data)
    out = DropModality(0.3, seed=1)(data)
    validate_mmkg(out)
    mods = ['image', 'text', 'numeric']
    present = stacked_masks(out, mods)
    lacking = ~present.any(dim=1)
    assert int(lacking.sum()) == 300
    # On a complete graph every entity keeps all or nothing:
    assert bool((present.all(dim=1) | lacking).all())
    for m in mods:
        ent = out['entity']
        dropped = ent[f'dropped_{m}']
        assert torch.equal(dropped, lacking)
        assert bool((ent[f'x_{m}'][dropped] == 0).all())
        assert torch.equal(ent[f'x_{m}'][~dropped], before[f'x_{m}'][~dropped])
    # Input unchanged:
    for k, v in before.items():
        assert torch.equal(data['entity'][k], v)
    assert 'dropped_image' not in data['entity']


def test_modality_level_exact_count():
    data = make_graph()
    mods = ['image', 'text', 'numeric']
    out = DropModality(0.3, level='modality', seed=2)(data)
    validate_mmkg(out)
    present = stacked_masks(out, mods)
    assert int((~present).sum()) == round(0.3 * 1000 * 3)
    dropped = torch.stack([out['entity'][f'dropped_{m}'] for m in mods], dim=1)
    assert torch.equal(dropped, ~present)
    # Pairs are drawn across modalities: entities end up with 0, 1, 2 or 3 modalities.
    assert set(present.sum(dim=1).tolist()) == {0, 1, 2, 3}
    # Each modality gets roughly its share:
    for j in range(3):
        assert 200 < int((~present[:, j]).sum()) < 400


def test_missing_share_counts_pairs_already_missing():
    missing = {'image': torch.arange(100), 'text': torch.arange(50, 150)}
    data = make_graph(missing=missing)
    mods = ['image', 'text', 'numeric']
    before = stacked_masks(data, mods)
    assert int((~before).sum()) == 200

    out = DropModality(0.3, level='modality', seed=0)(data)
    after = stacked_masks(out, mods)
    assert int((~after).sum()) == 900  # exactly round(0.3 * N * M) missing afterwards
    dropped = torch.stack([out['entity'][f'dropped_{m}'] for m in mods], dim=1)
    assert int(dropped.sum()) == 700  # only newly dropped pairs are recorded
    assert not bool((dropped & ~before).any())
    assert torch.equal(after, before & ~dropped)

    # Entity level: only entities 50..99 lack both image and text, none lacks all three.
    out = DropModality(0.3, level='entity', seed=0)(data)
    lacking = ~stacked_masks(out, mods).any(dim=1)
    assert int(lacking.sum()) == 300
    # Entities with image and text already missing (50..99) may be selected and lose the rest:
    ent = out['entity']
    assert not bool((ent.dropped_image & ~before[:, 0]).any())
    assert torch.equal(ent.dropped_numeric, lacking)

    out = DropModality(0.2, level='entity', modalities=['image', 'text'], seed=0)(data)
    lacking = ~stacked_masks(out, ['image', 'text']).any(dim=1)
    assert int(lacking.sum()) == 200  # 50 already lacking + 150 dropped
    assert int((out['entity'].dropped_image | out['entity'].dropped_text).sum()) == 150
    assert 'dropped_numeric' not in out['entity']
    assert torch.equal(out['entity'].mask_numeric, data['entity'].mask_numeric)


def test_already_more_missing_than_rate():
    data = make_graph(missing={'image': torch.arange(500)})
    with pytest.raises(ValueError, match='already has 500'):
        DropModality(0.1, level='modality', modalities=['image'])(data)
    out = DropModality(0.5, level='modality', modalities=['image'])(data)
    assert torch.equal(out['entity'].mask_image, data['entity'].mask_image)
    assert int(out['entity'].dropped_image.sum()) == 0


def test_selected_modalities_only():
    data = make_graph()
    out = DropModality(0.5, level='modality', modalities=['text'], seed=0)(data)
    assert int((~out['entity'].mask_text).sum()) == 500
    for m in ('image', 'numeric'):
        assert torch.equal(out['entity'][f'x_{m}'], data['entity'][f'x_{m}'])
        assert bool(out['entity'][f'mask_{m}'].all())


def test_random_fill_statistics():
    data = make_graph(num_entities=20000, dims={'image': 6})
    x = data['entity'].x_image
    out = DropModality(0.5, fill='random', seed=3)(data)
    validate_mmkg(out)
    ent = out['entity']
    filled = ent.x_image[ent.dropped_image]
    assert filled.size(0) == 10000
    assert not bool((filled == 0).all(dim=1).any())
    assert bool((~ent.mask_image[ent.dropped_image]).all())
    # Mean/std of the rows present in the input (mean 5, std 2 by construction):
    assert torch.allclose(filled.mean(dim=0), x.mean(dim=0), atol=0.1)
    assert torch.allclose(filled.std(dim=0), x.std(dim=0), rtol=0.05)
    # The filled rows are fresh draws, not copies of the originals:
    assert not torch.allclose(filled, x[ent.dropped_image])
    assert torch.equal(ent.x_image[~ent.dropped_image], x[~ent.dropped_image])


def test_seed():
    data = make_graph()
    a = DropModality(0.3, level='modality', fill='random', seed=7)(data)
    b = DropModality(0.3, level='modality', fill='random', seed=7)(data)
    c = DropModality(0.3, level='modality', fill='random', seed=8)(data)
    for m in ('image', 'text', 'numeric'):
        assert torch.equal(a['entity'][f'x_{m}'], b['entity'][f'x_{m}'])
        assert torch.equal(a['entity'][f'mask_{m}'], b['entity'][f'mask_{m}'])
    assert not torch.equal(a['entity'].mask_image, c['entity'].mask_image)

    torch.manual_seed(0)
    d = DropModality(0.3)(data)
    torch.manual_seed(0)
    e = DropModality(0.3)(data)
    f = DropModality(0.3)(data)
    assert torch.equal(d['entity'].mask_text, e['entity'].mask_text)
    assert not torch.equal(d['entity'].mask_text, f['entity'].mask_text)


def test_chained_drops_accumulate():
    data = make_graph()
    out = DropModality(0.1, level='modality', seed=0)(data)
    out = DropModality(0.2, level='modality', seed=1)(out)
    mods = ['image', 'text', 'numeric']
    assert int((~stacked_masks(out, mods)).sum()) == 600
    dropped = torch.stack([out['entity'][f'dropped_{m}'] for m in mods], dim=1)
    assert int(dropped.sum()) == 600


def test_extremes():
    data = make_graph(num_entities=10)
    out = DropModality(0.0)(data)
    assert bool(out['entity'].mask_image.all())
    out = DropModality(1.0)(data)
    assert not bool(out['entity'].mask_image.any())
    validate_mmkg(out)


def test_functional_and_repr():
    data = make_graph(num_entities=10)
    assert 'level=\'modality\'' in repr(DropModality(0.2, level='modality'))
    out = list(IterableWrapper([data]).drop_modality(0.5, seed=0))
    assert int((~out[0]['entity'].mask_image).sum()) == 5


def test_errors():
    with pytest.raises(ValueError, match="'rate' must lie in"):
        DropModality(1.5)
    with pytest.raises(ValueError, match="'rate' must lie in"):
        DropModality(-0.1)
    with pytest.raises(ValueError, match="'level'"):
        DropModality(0.1, level='triple')
    with pytest.raises(ValueError, match="'fill'"):
        DropModality(0.1, fill='mean')
    with pytest.raises(ValueError, match='duplicates'):
        DropModality(0.1, modalities=['text', 'text'])
    with pytest.raises(ValueError, match='Unknown modalities'):
        DropModality(0.1, modalities=['audio'])(make_graph(num_entities=10))


def test_relative_to_present():
    # 100 entities already lack the image; drop exactly 30% of the 900 present images.
    data = make_graph(missing={'image': torch.arange(100)})
    out = DropModality(0.3, level='modality', modalities=['image'], relative_to='present',
                       seed=0)(data)
    validate_mmkg(out)
    assert int(out['entity'].dropped_image.sum()) == 270
    assert int((~out['entity'].mask_image).sum()) == 370
    assert not out['entity'].dropped_image[:100].any()   # only present rows are dropped
    # Entity level: entities with at least one modality are the population (all 1000 here).
    out = DropModality(0.25, level='entity', relative_to='present', seed=0)(data)
    lacking = ~stacked_masks(out, ['image', 'text', 'numeric']).any(dim=1)
    assert int(lacking.sum()) == 250
    # The default ('all') refuses a target below what is already missing.
    with pytest.raises(ValueError, match='already has 100'):
        DropModality(0.05, level='modality', modalities=['image'])(data)
    with pytest.raises(ValueError, match='relative_to'):
        DropModality(0.1, relative_to='nope')
