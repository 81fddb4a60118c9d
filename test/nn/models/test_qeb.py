import math

import pytest
import torch

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import MODELS, QEB
from torch_mmkg.nn.models.qeb import QEB_TERM_NAMES

N, R, D = 12, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')

MODALITIES = {'text': 5, 'image': 7, 'video': 3, 'audio': 2}


def features(seed=0):
    r"""TIVA's four modalities with holes; entity 0 has none, entity 1 only audio."""
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(N, f, generator=g) for m, f in MODALITIES.items()}
    masks = {m: torch.arange(N) % (i + 2) != 1 for i, m in enumerate(MODALITIES)}
    for m in masks:
        masks[m][0] = False
        masks[m][1] = m == 'audio'
    return feats, masks


def make(feats=None, masks=None, seed=0, **kwargs):
    if feats is None:
        feats, masks = features()
    torch.manual_seed(seed)
    model = QEB(N, R, D, feats, masks, **kwargs).double()
    with torch.no_grad():  # no zero bias to hide a missing term
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def triples(n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(0, N, (n, ), generator=g)
    r = torch.randint(0, R, (n, ), generator=g)
    t = torch.randint(0, N, (n, ), generator=g)
    h[0], t[1], h[2] = 0, 0, 1  # no modality at all; audio only
    return h, r, t


# The formulas, entity by entity, in plain Python floats #######################################

def vec(x):
    return [float(v) for v in x.detach()]


def multimodal(model, feats, masks, e, activation='tanh'):
    r""":math:`m = \tanh(\sum_{m \text{ present}} W_m x_m + b)`: the dense layer on the
    concatenated features, a missing modality contributing nothing."""
    z = vec(model.fusion.inner.bias)
    for m in feats:
        if bool(masks[m][e]):
            W = model.representation.projection.mlps[m][0].weight.detach().tolist()
            x = vec(feats[m][e])
            z = [z[o] + sum(W[o][i] * x[i] for i in range(len(x))) for o in range(D)]
    return [math.tanh(v) for v in z] if activation == 'tanh' else z


def unit(v):
    n = max(math.sqrt(sum(x * x for x in v)), 1e-12)
    return [x / n for x in v]


def d(h, r, t, normalize=False):
    r""":math:`\|h + r - t\|_1`, on unit vectors with :obj:`normalize` (OpenKE)."""
    if normalize:
        h, r, t = unit(h), unit(r), unit(t)
    return sum(abs(a + b - c) for a, b, c in zip(h, r, t))


def plus(a, b):
    return [x + y for x, y in zip(a, b)]


def naive_energies(model, feats, masks, h, r, t, activation='tanh', normalize=False):
    r"""Per triple, the ten energies, each written out from the card (train.py's order):
    with r: ss, ms, sm, mm, (s+m)(s+m); with r_m: mm, (s+m)(s+m), ss, ms, sm."""
    out = []
    for a, b, c in zip(h.tolist(), r.tolist(), t.tolist()):
        hs, ts = vec(model.node_emb.weight[a]), vec(model.node_emb.weight[c])
        hm = multimodal(model, feats, masks, a, activation)
        tm = multimodal(model, feats, masks, c, activation)
        rel = vec(model.rel_emb.weight[b])
        r1, rm = rel[:D], rel[D:]
        n = normalize
        out.append([d(hs, r1, ts, n), d(hm, r1, ts, n), d(hs, r1, tm, n), d(hm, r1, tm, n),
                    d(plus(hs, hm), r1, plus(ts, tm), n),
                    d(hm, rm, tm, n), d(plus(hs, hm), rm, plus(ts, tm), n), d(hs, rm, ts, n),
                    d(hm, rm, ts, n), d(hs, rm, tm, n)])
    return torch.tensor(out, dtype=torch.float64)


# The score ####################################################################################

def test_score_is_minus_the_sum_of_ten_energies():
    feats, masks = features()
    model = make().eval()
    h, r, t = triples()
    E = naive_energies(model, feats, masks, h, r, t)
    with torch.no_grad():
        torch.testing.assert_close(model(h, r, t), -E.sum(1), atol=1e-10, rtol=0)
        parts = model.score_parts(h, r, t)
        assert tuple(parts) == QEB_TERM_NAMES
        for k, name in enumerate(QEB_TERM_NAMES):
            torch.testing.assert_close(parts[name], -E[:, k], atol=1e-10, rtol=0)
        # every entity as a tail and as a head
        every = torch.arange(N)
        want = -naive_energies(model, feats, masks, h.repeat_interleave(N),
                               r.repeat_interleave(N), every.repeat(h.numel())).sum(1)
        torch.testing.assert_close(model.score_tails(h, r), want.view(-1, N), atol=1e-10,
                                   rtol=0)


@pytest.mark.parametrize('normalize', [False, True])
def test_zjukg_version_is_gamma_minus_the_mean(normalize):
    feats, masks = features()
    model = make(aggregate='mean', score_margin=6.0, activation='linear',
                 normalize=normalize, trainable_features=True).eval()
    feats = {m: getattr(model.representation, f'x_{m}') for m in feats}  # fine-tuned tables
    h, r, t = triples()
    E = naive_energies(model, feats, masks, h, r, t, 'linear', normalize)
    with torch.no_grad():
        torch.testing.assert_close(model(h, r, t), 6.0 - E.mean(1), atol=1e-10, rtol=0)
        torch.testing.assert_close(model.score_heads(r, t)[torch.arange(h.numel()), h],
                                   6.0 - E.mean(1), atol=1e-10, rtol=0)


def test_score_margin_of_the_sum():
    feats, masks = features()
    model = make(score_margin=2.5).eval()
    h, r, t = triples()
    E = naive_energies(model, feats, masks, h, r, t)
    with torch.no_grad():
        torch.testing.assert_close(model(h, r, t), 2.5 - E.sum(1), atol=1e-10, rtol=0)


def test_multimodal_embedding_and_missing_modalities():
    feats, masks = features()
    model = make().eval()
    with torch.no_grad():
        e_s, e_m = model.embed()
        assert torch.equal(e_s, model.node_emb.weight)
        for e in range(N):
            torch.testing.assert_close(e_m[e], torch.tensor(multimodal(model, feats, masks, e),
                                                            dtype=torch.float64),
                                       atol=1e-12, rtol=0)
        # no modality: tanh(b), the learned stand-in
        torch.testing.assert_close(e_m[0], torch.tanh(model.fusion.inner.bias), atol=0, rtol=0)
        h, r, t = triples()
        want = model(h, r, t)
    garbage = {m: x.clone() for m, x in feats.items()}
    for m in garbage:
        garbage[m][~masks[m]] = 1e6 * (1 + torch.arange(garbage[m].size(1))).float()
    other = make(garbage, masks).eval()
    with torch.no_grad():
        assert torch.equal(other(h, r, t), want)
    unmasked = make(garbage, masks, mask_missing=False).eval()
    with torch.no_grad():
        assert not torch.allclose(unmasked(h, r, t), want)


def test_default_loss_is_the_margin_ranking_loss_with_margin_10():
    feats, masks = features()
    model = make().train()
    h, r, t = triples(8, seed=2)
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(0))(h, r, t)
    ch = neg.corrupt_head[:, None]
    hh = torch.where(ch, neg.index, h[:, None]).reshape(-1)
    tt = torch.where(ch, t[:, None], neg.index).reshape(-1)
    rr = r[:, None].expand(-1, 3).reshape(-1)
    pos = naive_energies(model, feats, masks, h, r, t).sum(1)
    negs = naive_energies(model, feats, masks, hh, rr, tt).sum(1).view(8, 3)
    want = float((10.0 + pos[:, None] - negs).clamp(min=0).mean())
    loss = model.loss(h, r, t, neg)
    assert loss.item() == pytest.approx(want, abs=1e-10)
    loss.backward()
    rel_grad = model.rel_emb.weight.grad
    assert rel_grad[:, :D].abs().sum() > 0 and rel_grad[:, D:].abs().sum() > 0  # r and r_m
    assert model.fusion.inner.bias.grad.abs().sum() > 0


def test_registered_and_defaults():
    assert MODELS['qeb'] is QEB and MODELS['QEB'] is QEB
    model = make()
    assert model.loss_fn.margin == 10.0 and model.p_norm == 1.0
    assert model.aggregate == 'sum' and model.activation == 'tanh'
    assert not model.interaction.base.normalize
    assert model.rel_emb.weight.shape == (R, 2 * D)  # [r, r_m]
    assert model.modalities == list(MODALITIES)
    assert model.relation(torch.tensor([1])).shape == (1, 2 * D)


def test_bad_input():
    feats, masks = features()
    with pytest.raises(ValueError, match="QEB: aggregate must be one of 'sum', 'mean'"):
        QEB(N, R, D, feats, masks, aggregate='max')
    with pytest.raises(ValueError, match="QEB: activation must be one of 'tanh', 'linear'"):
        QEB(N, R, D, feats, masks, activation='relu')
    with pytest.raises(ValueError, match='QEB: margin must be'):
        QEB(N, R, D, feats, masks, margin=-1.0)
    with pytest.raises(ValueError, match='QEB: score_margin must be'):
        QEB(N, R, D, feats, masks, score_margin=float('nan'))
    with pytest.raises(ValueError, match='at least one modality'):
        QEB(N, R, D, {})
