import pytest
import torch

from torch_mmkg.data import KnownTriples, get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import NATIVE

N, R = 20, 3


def make(**kwargs):
    torch.manual_seed(0)
    feats = {'text': torch.randn(N, 5), 'numeric': torch.randn(N, 3)}
    masks = {'text': torch.arange(N) % 3 != 0, 'numeric': torch.arange(N) % 2 == 0}
    return NATIVE(N, R, 4, feats, masks, **kwargs), feats, masks


def triples(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


@pytest.mark.parametrize('relation_temperature', [True, False])
def test_forward_matches_one_vs_all_and_negatives(relation_temperature):
    model = make(relation_temperature=relation_temperature)[0].eval()
    h, r, t = triples()
    with torch.no_grad():
        s = model(h, r, t)
        assert torch.allclose(model.score_tails(h, r).gather(1, t[:, None]).view(-1), s,
                              atol=1e-5)
        assert torch.allclose(model.score_heads(r, t).gather(1, h[:, None]).view(-1), s,
                              atol=1e-5)
        neg = NegativeSampler(N, 4, generator=torch.Generator().manual_seed(0))(h, r, t)
        pos, scores = model.score_negatives(h, r, t, neg)
        ch = neg.corrupt_head[:, None]
        hh = torch.where(ch, neg.index, h[:, None])
        tt = torch.where(ch, t[:, None], neg.index)
        assert torch.allclose(pos, s, atol=1e-5)
        assert torch.allclose(scores, model(hh, r[:, None].expand_as(hh), tt), atol=1e-5)


def test_missing_features_never_enter_the_score():
    model, feats, masks = make()
    model.eval()
    h, r, t = triples()
    before = model(h, r, t).detach()
    # overwrite the features of entities that lack 'text' with garbage
    x = getattr(model, 'x_text')
    x[~masks['text']] = 1e3 * torch.randn(int((~masks['text']).sum()), 5)
    assert torch.allclose(model(h, r, t), before, atol=1e-5)
    # the paper's behaviour (no masking) does see them
    plain = make(mask_missing=False)[0].eval()
    before = plain(h, r, t).detach()
    getattr(plain, 'x_text')[~masks['text']] += 5.0
    assert not torch.allclose(plain(h, r, t), before, atol=1e-3)


def test_relation_temperature_changes_weights_and_learns():
    model = make()[0]
    stack, mask = model.modality_stack(torch.tensor([1]))
    w0 = model.fusion.weights(stack, mask, torch.tensor([0]))
    with torch.no_grad():
        model.fusion.zeta[1] = 3.0
    w1 = model.fusion.weights(stack, mask, torch.tensor([1]))
    assert not torch.allclose(w0, w1)
    h, r, t = triples()
    model.loss(h, r, t, NegativeSampler(N, 4)(h, r, t)).backward()
    assert model.fusion.zeta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.projection.parameters())


def test_bad_input():
    with pytest.raises(ValueError, match="'text' contain NaN"):
        NATIVE(N, R, 4, {'text': torch.full((N, 2), float('nan'))})
    with pytest.raises(ValueError, match=r"must be \[20, F\]"):
        NATIVE(N, R, 4, {'text': torch.randn(N + 1, 2)})
    with pytest.raises(ValueError, match='bool'):
        NATIVE(N, R, 4, {'text': torch.randn(N, 2)}, {'text': torch.ones(N)})


@pytest.fixture
def single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_learns_planted_signal(single_thread):
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4,
                           num_triples=600, modalities={'image': 8, 'text': 6}, seed=1)[0]
    torch.manual_seed(0)
    model = NATIVE.from_data(data, 8, margin=2.0)
    known = KnownTriples.from_data(data)
    test = get_triples(data, 'test')
    before = model.test(*test, known=known, log=False)[1]
    loader = model.loader(*get_triples(data, 'train'), num_negatives=8, batch_size=64,
                          generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(15):
        for batch in loader:
            opt.zero_grad()
            model.loss(*batch).backward()
            opt.step()
    after = model.test(*test, known=known, log=False)[1]
    assert after > before + 0.1
