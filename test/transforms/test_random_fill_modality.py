import math

import pytest
import torch

from torch_mmkg.completion import completed_key, original_mask
from torch_mmkg.data import build_mmkg, validate_mmkg
from torch_mmkg.evaluation import entity_completeness
from torch_mmkg.transforms import DropModality, RandomFillModality

N = 4000
LOC = torch.tensor([5.0, -2.0, 0.0, 10.0, 1.0])
SCALE = torch.tensor([2.0, 0.5, 1.0, 3.0, 0.1])


def make_graph(missing_share=0.4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack([torch.randint(N, (50, ), generator=gen),
                           torch.randint(3, (50, ), generator=gen),
                           torch.randint(N, (50, ), generator=gen)], dim=1)
    image = torch.randn(N, 5, generator=gen) * SCALE + LOC
    text = torch.randn(N, 3, generator=gen)
    mask_image = torch.rand(N, generator=gen) >= missing_share
    image[~mask_image] = 0.0
    mask_text = torch.ones(N, dtype=torch.bool)
    return build_mmkg(N, 3, {'train': triples[:40], 'val': triples[40:45],
                             'test': triples[45:]}, {'image': image, 'text': text},
                      {'image': mask_image, 'text': mask_text})


@pytest.mark.parametrize('distribution', ['normal', 'uniform'])
def test_filled_rows_have_the_moments_of_present_rows(distribution):
    data = make_graph()
    before = {k: v.clone() for k, v in data['entity'].items() if torch.is_tensor(v)}
    missing = ~before['mask_image']
    out = RandomFillModality(['image'], distribution=distribution, seed=0)(data)
    validate_mmkg(out)
    ent = out['entity']
    x = ent['x_image']
    filled = x[missing]
    n = int(missing.sum())
    assert n > 1000
    real = before['x_image'][before['mask_image']]
    mu, sigma = real.mean(0), real.std(0, unbiased=False)
    # per dimension: the mean within 5 standard errors, the standard deviation within 6%
    assert torch.all((filled.mean(0) - mu).abs() < 5 * sigma / math.sqrt(n))
    assert torch.allclose(filled.std(0), sigma, rtol=0.06)
    bound = mu + math.sqrt(3.0) * sigma
    if distribution == 'uniform':  # bounded by mu +- sqrt(3) sigma, flat inside
        assert torch.all(filled <= bound + 1e-5) and torch.all(filled >= 2 * mu - bound - 1e-5)
        inner = ((filled - mu).abs() < 0.5 * math.sqrt(3.0) * sigma).float().mean()
        assert abs(float(inner) - 0.5) < 0.05
    else:  # Gaussian tails beyond that bound (about 8% of the values)
        share = ((filled - mu).abs() > math.sqrt(3.0) * sigma).float().mean()
        assert 0.06 < float(share) < 0.10
    # random, not a constant or a copy of present rows
    assert filled.std(0).min() > 0
    # present rows, other modalities and the input graph stay untouched
    assert torch.equal(x[~missing], before['x_image'][~missing])
    assert torch.equal(ent['x_text'], before['x_text'])
    assert 'filled_text' not in ent or not ent['filled_text'].any()
    for k, v in before.items():
        assert torch.equal(data['entity'][k], v)
    assert 'filled_image' not in data['entity']


def test_mask_and_flags():
    data = make_graph()
    missing = ~data['entity'].mask_image.clone()
    complete_before = entity_completeness(data)
    out = RandomFillModality(seed=0)(data)  # all modalities: text has no hole
    ent = out['entity']
    # the paper's ablation treats random rows as present ...
    assert bool(ent.mask_image.all())
    # ... flagged, so that the source data can still be told apart
    assert torch.equal(ent.filled_image, missing)
    assert torch.equal(ent[completed_key('image')], missing)
    assert torch.equal(original_mask(out, 'image'), ~missing)
    assert torch.equal(entity_completeness(out), complete_before)
    assert not ent.filled_text.any() and bool(ent.mask_text.all())
    # mark_present=False fills the rows but keeps them missing
    out = RandomFillModality(['image'], mark_present=False, seed=0)(make_graph())
    ent = out['entity']
    assert torch.equal(ent.mask_image, ~missing)
    assert completed_key('image') not in ent
    assert torch.equal(ent.filled_image, missing)
    assert bool((ent.x_image[missing] != 0).all())


def test_seeded_reproducibility():
    a = RandomFillModality(['image'], seed=7)(make_graph())['entity'].x_image
    b = RandomFillModality(['image'], seed=7)(make_graph())['entity'].x_image
    c = RandomFillModality(['image'], seed=8)(make_graph())['entity'].x_image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # one transform called twice gives the same rows (a fresh generator per call)
    t = RandomFillModality(['image'], seed=7)
    assert torch.equal(t(make_graph())['entity'].x_image, a)
    # without a seed the global generator is used
    torch.manual_seed(3)
    d = RandomFillModality(['image'])(make_graph())['entity'].x_image
    torch.manual_seed(3)
    e = RandomFillModality(['image'])(make_graph())['entity'].x_image
    assert torch.equal(d, e) and not torch.equal(d, a)


def test_completed_rows_are_neither_filled_nor_a_reference():
    data = make_graph()
    ent = data['entity']
    missing = ~ent.mask_image.clone()
    # 100 rows completed earlier (present, flagged) with far-off values
    done = missing.nonzero().view(-1)[:100]
    x = ent.x_image.clone()
    x[done] = 1000.0
    ent.x_image = x
    mask = ent.mask_image.clone()
    mask[done] = True
    ent.mask_image = mask
    flag = torch.zeros(N, dtype=torch.bool)
    flag[done] = True
    ent[completed_key('image')] = flag
    out = RandomFillModality(['image'], seed=0)(data)
    ent = out['entity']
    assert bool((ent.x_image[done] == 1000.0).all())
    rest = missing.clone()
    rest[done] = False
    assert torch.equal(ent.filled_image, rest)
    assert torch.equal(ent[completed_key('image')], missing)
    assert float(ent.x_image[rest].max()) < 100  # moments of the real rows only


def test_no_present_row_needs_loc_and_scale():
    data = DropModality(1.0, modalities=['image'], seed=0)(make_graph())
    assert not data['entity'].mask_image.any()
    with pytest.raises(ValueError, match="present for 0 entities.*pass 'loc' and 'scale'"):
        RandomFillModality(['image'])(data)
    out = RandomFillModality(['image'], loc=3.0, scale=2.0, seed=0)(data)
    x = out['entity'].x_image
    assert bool(out['entity'].mask_image.all())
    assert abs(float(x.mean()) - 3.0) < 0.05 and abs(float(x.std()) - 2.0) < 0.05


def test_errors_and_repr():
    with pytest.raises(ValueError, match="'distribution' must be one of"):
        RandomFillModality(distribution='gaussian')
    with pytest.raises(ValueError, match="'scale' must be a finite non-negative"):
        RandomFillModality(scale=-1.0)
    with pytest.raises(ValueError, match="'mark_present' must be True or False"):
        RandomFillModality(mark_present='yes')
    with pytest.raises(ValueError, match='Unknown modalities'):
        RandomFillModality(['audio'])(make_graph())
    assert repr(RandomFillModality(['image'], seed=1)) == (
        "RandomFillModality(modalities=['image'], distribution='normal', mark_present=True, "
        "loc=None, scale=None, seed=1)")
