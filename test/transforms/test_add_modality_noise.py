import pytest
import torch
from torch.utils.data.datapipes.iter import IterableWrapper

from torch_mmkg.data import build_mmkg, validate_mmkg
from torch_mmkg.transforms import AddModalityNoise


def make_graph(num_entities=1000, num_missing=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack([torch.randint(num_entities, (30, ), generator=gen),
                           torch.randint(2, (30, ), generator=gen),
                           torch.randint(num_entities, (30, ), generator=gen)], dim=1)
    scale = torch.tensor([0.5, 1.0, 2.0, 4.0])
    features, masks = {}, {}
    for m in ('image', 'text'):
        x = torch.randn(num_entities, 4, generator=gen) * scale + 1.0
        mask = torch.ones(num_entities, dtype=torch.bool)
        mask[torch.randperm(num_entities, generator=gen)[:num_missing]] = False
        x[~mask] = 0
        features[m], masks[m] = x, mask
    return build_mmkg(num_entities, 2, {'train': triples[:20], 'val': triples[20:25],
                                        'test': triples[25:]}, features, masks)


def test_exact_count_and_untouched_rows():
    data = make_graph()
    before = {k: v.clone() for k, v in data['entity'].items() if torch.is_tensor(v)}
    out = AddModalityNoise(0.25, seed=0)(data)
    validate_mmkg(out)
    ent = out['entity']
    for m in ('image', 'text'):
        noised = ent[f'noised_{m}']
        assert int(noised.sum()) == round(0.25 * 800)
        assert not bool((noised & ~ent[f'mask_{m}']).any())  # missing rows never touched
        assert torch.equal(ent[f'mask_{m}'], before[f'mask_{m}'])
        assert torch.equal(ent[f'x_{m}'][~noised], before[f'x_{m}'][~noised])
        assert bool((ent[f'x_{m}'][noised] != before[f'x_{m}'][noised]).all())
    for k, v in before.items():  # input unchanged
        assert torch.equal(data['entity'][k], v)
    assert 'noised_image' not in data['entity']


def test_relative_scale():
    data = make_graph(num_entities=40000, num_missing=0)
    x = data['entity'].x_image
    out = AddModalityNoise(1.0, std=0.5, modalities=['image'], seed=1)(data)
    diff = out['entity'].x_image - x
    expected = 0.5 * x.std(dim=0, unbiased=False)
    assert torch.allclose(diff.std(dim=0), expected, rtol=0.03)
    assert torch.allclose(diff.mean(dim=0), torch.zeros(4), atol=0.05)
    assert torch.equal(out['entity'].x_text, data['entity'].x_text)
    assert 'noised_text' not in out['entity']


def test_absolute_scale():
    data = make_graph(num_entities=40000, num_missing=0)
    x = data['entity'].x_text
    out = AddModalityNoise(1.0, std=0.3, modalities='text', relative=False, seed=1)(data)
    diff = out['entity'].x_text - x
    assert torch.allclose(diff.std(dim=0), torch.full((4, ), 0.3), rtol=0.03)


def test_seed_and_chaining():
    data = make_graph()
    a = AddModalityNoise(0.5, seed=3)(data)
    b = AddModalityNoise(0.5, seed=3)(data)
    c = AddModalityNoise(0.5, seed=4)(data)
    assert torch.equal(a['entity'].x_image, b['entity'].x_image)
    assert not torch.equal(a['entity'].x_image, c['entity'].x_image)
    twice = AddModalityNoise(0.5, seed=4)(a)
    assert torch.equal(twice['entity'].noised_image,
                       a['entity'].noised_image | c['entity'].noised_image)


def test_zero_ratio_and_functional():
    data = make_graph(num_entities=50, num_missing=5)
    out = AddModalityNoise(0.0)(data)
    assert torch.equal(out['entity'].x_image, data['entity'].x_image)
    out = list(IterableWrapper([data]).add_modality_noise(0.2, seed=0))[0]
    assert int(out['entity'].noised_text.sum()) == 9
    assert 'relative=True' in repr(AddModalityNoise(0.1))


def test_errors():
    with pytest.raises(ValueError, match="'ratio' must lie in"):
        AddModalityNoise(1.2)
    with pytest.raises(ValueError, match="'std'"):
        AddModalityNoise(0.1, std=-1.0)
    with pytest.raises(ValueError, match="'std'"):
        AddModalityNoise(0.1, std=float('nan'))
    with pytest.raises(ValueError, match='Unknown modalities'):
        AddModalityNoise(0.1, modalities=['audio'])(make_graph(num_entities=10, num_missing=0))
