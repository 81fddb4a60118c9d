r"""OTKGE and its Sinkhorn against naive transcriptions (research card baselines.md 2.6, the
authors' models.py cal_ot and sinkhorn_cal1.py), and the weighted-sum fusion it shares with
RSME."""
import math

import pytest
import torch

from torch_mmkg.nn import OTKGE
from torch_mmkg.nn.fusion import WeightedSumFusion
from torch_mmkg.nn.models.otkge import mean_transport_plan
from torch_mmkg.ops import sinkhorn
from torch_mmkg.testing import FusionCase

N, R, D = 12, 3, 2
DT = torch.float64


# Sinkhorn ######################################################################################


def naive_sinkhorn(C, a, b, eps, iters):
    r"""Sinkhorn-Knopp with the kernel itself, float64, a fixed number of iterations."""
    n, m = C.shape
    K = [[math.exp(-float(C[i, j]) / eps) for j in range(m)] for i in range(n)]
    v = [1.0 / m] * m
    u = [0.0] * n
    for _ in range(iters):
        u = [float(a[i]) / sum(K[i][j] * v[j] for j in range(m)) for i in range(n)]
        v = [float(b[j]) / sum(K[i][j] * u[i] for i in range(n)) for j in range(m)]
    return torch.tensor([[u[i] * K[i][j] * v[j] for j in range(m)] for i in range(n)], dtype=DT)


def authors_sinkhorn_knopp(a, b, C, reg=0.1, max_iter=1000, stop=1e-9, eval_freq=10):
    r"""The authors' sinkhorn_knopp (sinkhorn_cal1.py), transcribed in float64: C is
    [na, nb] after their transpose, K = exp(-reg C)."""
    na, nb = C.shape
    u = torch.ones(na, dtype=DT) / na
    v = torch.ones(nb, dtype=DT) / nb
    K = torch.exp(-reg * C)
    eps, it, err = 1e-16, 1, 1.0
    while err > stop and it <= max_iter:
        v = b / (u @ K + eps)
        u = a / (K @ v + eps)
        if it % eval_freq == 0:
            err = (b - (u @ K) * v).pow(2).sum().item()
        it += 1
    return u.reshape(-1, 1) * K * v.reshape(1, -1)


def authors_cal_ot(X, E, scale, number, delta, reg=0.1):
    r"""The authors' cal_ot: the mean plan of entities 0..number-1, times D times scale,
    plus delta; the plan is [D, F] in their sinkhorn and transposed to [F, D]."""
    F_, D_ = X.shape[1], E.shape[1]
    mm = torch.ones(F_, dtype=DT) / F_
    st = torch.ones(D_, dtype=DT) / D_
    acc = torch.zeros(number, F_, D_, dtype=DT)
    for i in range(number):
        cost = (X[i].reshape(-1, F_) - E[i].reshape(D_, -1)) ** 2 * scale  # [D, F]
        # sinkhorn(b=mm, a=st, C=cost.t()) -> sinkhorn_knopp(st, mm, cost.t()), C = C.t()
        acc[i] = authors_sinkhorn_knopp(st, mm, cost.t().t(), reg).t()
    return acc.mean(dim=0) * D_ * scale + delta


def test_sinkhorn_matches_the_naive_iteration():
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(2, 4, 3, generator=gen, dtype=DT) * 3
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    b = torch.tensor([0.5, 0.25, 0.25], dtype=DT)
    for eps in (0.5, 2.0):
        got = sinkhorn(C, a, b, epsilon=eps, max_iter=37, tol=0.0)
        for k in range(2):
            want = naive_sinkhorn(C[k], a, b, eps, 37)
            assert torch.allclose(got[k], want, atol=1e-13, rtol=1e-10)
        # the columns' marginals exact after the last step, the rows' nearly
        assert torch.allclose(got.sum(-2), b.expand(2, 3), atol=1e-12)
        conv = sinkhorn(C, a, b, epsilon=eps, max_iter=5000, tol=1e-20, check_every=1)
        assert torch.allclose(conv.sum(-1), a.expand(2, 4), atol=1e-9)


def test_sinkhorn_small_epsilon_in_the_log_domain():
    gen = torch.Generator().manual_seed(1)
    C = 1000.0 + 5 * torch.rand(5, 6, generator=gen, dtype=DT)  # exp(-C) underflows
    assert float(torch.exp(-C).max()) == 0.0
    P = sinkhorn(C, epsilon=1.0, max_iter=3000, tol=1e-24)
    assert torch.isfinite(P).all() and bool((P >= 0).all())
    assert torch.allclose(P.sum(-1), torch.full((5, ), 1 / 5, dtype=DT), atol=1e-10)
    assert torch.allclose(P.sum(-2), torch.full((6, ), 1 / 6, dtype=DT), atol=1e-12)
    # a constant offset of the cost does not change the plan
    want = naive_sinkhorn(C - 1000.0, torch.full((5, ), 0.2, dtype=DT),
                          torch.full((6, ), 1 / 6, dtype=DT), 1.0, 200)
    assert torch.allclose(sinkhorn(C, epsilon=1.0, max_iter=200, tol=0.0), want, atol=1e-12)


def test_sinkhorn_arguments():
    with pytest.raises(ValueError, match='epsilon'):
        sinkhorn(torch.rand(2, 2), epsilon=0.0)
    with pytest.raises(ValueError, match='cost'):
        sinkhorn(torch.rand(3))
    with pytest.raises(ValueError, match='positive'):
        sinkhorn(torch.rand(2, 2), a=torch.tensor([1.0, 0.0]))


# The transport map ##############################################################################


def features(seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = {'image': torch.randn(N, 3, generator=gen).double(),  # float32 values, as stored
             'text': torch.randn(N, 2, generator=gen).double()}
    masks = {'image': torch.arange(N) % 3 != 1, 'text': torch.arange(N) % 4 != 0}
    return feats, masks


def make(seed=0, **kwargs):
    feats, masks = features()
    torch.manual_seed(seed)
    kwargs.setdefault('scale', 3.0)
    model = OTKGE(N, R, D, feats, masks, **kwargs).to(DT)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=DT))
    return model.eval(), feats, masks


@pytest.mark.parametrize('mask_missing', [False, True])
def test_transport_map_is_the_authors_cal_ot(mask_missing):
    model, feats, masks = make(mask_missing=mask_missing, ot_entities=4)
    E = model.node_emb.weight.detach()
    for m in ('image', 'text'):
        ids = (masks[m].nonzero().view(-1) if mask_missing else torch.arange(N))[:4]
        want = authors_cal_ot(feats[m][ids], E[ids], 3.0, 4, model.representation.delta[m])
        got = model.representation.transport_map(m)
        assert torch.allclose(got, want, atol=1e-10)
    P = model.representation.transport_plan('image')
    assert not P.requires_grad
    assert torch.allclose(P.sum(), torch.tensor(1.0, dtype=DT))


def test_ot_from_all_entities_and_the_cache():
    model, feats, masks = make(ot_entities='all', ot_epsilon=0.5)
    rep = model.representation
    ids = masks['text'].nonzero().view(-1)
    want = mean_transport_plan(feats['text'][ids], model.node_emb.weight.detach()[ids], 3.0,
                               0.5)
    manual = sum(sinkhorn(3.0 * (feats['text'][i][:, None] -
                                 model.node_emb.weight.detach()[i][None]).pow(2),
                          epsilon=0.5) for i in ids.tolist()) / ids.numel()
    assert torch.allclose(want, manual, atol=1e-6)  # the batch stops when all converged
    fixed = mean_transport_plan(feats['text'][ids], model.node_emb.weight.detach()[ids], 3.0,
                                0.5, max_iter=30, tol=0.0)
    manual = sum(sinkhorn(3.0 * (feats['text'][i][:, None] -
                                 model.node_emb.weight.detach()[i][None]).pow(2),
                          epsilon=0.5, max_iter=30, tol=0.0) for i in ids.tolist()) / ids.numel()
    assert torch.allclose(fixed, manual, atol=1e-14)
    assert torch.allclose(rep.transport_plan('text'), want, atol=1e-14)
    first = rep.transport_plan('text')
    assert rep.transport_plan('text') is first  # cached while the table is unchanged
    with torch.no_grad():
        model.node_emb.weight.mul_(1.5)
    assert not torch.allclose(rep.transport_plan('text'), first)


def test_random_subset():
    model, feats, masks = make(ot_entities=3, ot_random=True)
    rep = model.representation
    torch.manual_seed(0)
    seen = {tuple(sorted(rep.ot_index('image').tolist())) for _ in range(10)}
    assert len(seen) > 1
    assert all(len(s) == 3 and all(bool(masks['image'][i]) for i in s) for s in seen)


def naive_entity(model, feats, masks, e, weights, missing='structure', mask_missing=True):
    r"""ê = (1 - Σ α_m) e_s + Σ α_m x_m T_m, a missing modality's weight to e_s (or spread
    over the present slots in proportion)."""
    T = {m: model.representation.transport_map(m).detach() for m in feats}
    w = {'s': 1.0 - sum(weights.values()), **weights}
    present = {m: (bool(masks[m][e]) or not mask_missing) for m in feats}
    if mask_missing and missing == 'structure':
        w['s'] += sum(weights[m] for m in feats if not present[m])
    elif mask_missing:
        total = 1.0
        kept = w['s'] + sum(weights[m] for m in feats if present[m])
        w = {k: (v * total / kept if (k == 's' or present[k]) else 0.0) for k, v in w.items()}
    out = []
    for k in range(2 * D):
        v = w['s'] * float(model.node_emb.weight.detach()[e, k])
        for m in feats:
            if present[m]:
                v += w[m] * sum(float(feats[m][e, f]) * float(T[m][f, k])
                                for f in range(feats[m].size(1)))
        out.append(v)
    return out


def c(v):
    v = [float(x) for x in v]
    k = len(v) // 2
    return [complex(v[i], v[k + i]) for i in range(k)]


@pytest.mark.parametrize('kwargs', [dict(), dict(missing='renormalize'),
                                    dict(mask_missing=False)])
def test_score_is_the_papers_equation(kwargs):
    weights = {'image': 0.125, 'text': 0.625}
    model, feats, masks = make(modality_weights=weights, **kwargs)
    h = torch.tensor([0, 1, 2, 3, 4, 5, 9, 11])
    r = torch.tensor([0, 1, 2, 0, 4, 5, 1, 2])
    t = torch.tensor([4, 8, 1, 0, 7, 6, 2, 3])
    got = model(h, r, t)
    for i in range(h.numel()):
        eh = naive_entity(model, feats, masks, int(h[i]), weights, **kwargs)
        et = naive_entity(model, feats, masks, int(t[i]), weights, **kwargs)
        rr = model.rel_emb.weight[int(r[i])]
        want = sum(a * b * e.conjugate() for a, b, e in zip(c(eh), c(rr), c(et))).real
        assert got[i].item() == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_gradients_reach_delta_not_the_plan():
    model, _, _ = make()
    model.train()
    e, rel = torch.tensor([0, 5]), torch.tensor([1, 3])
    target = torch.zeros(2, N)
    target[0, 3] = target[1, 2] = 1.0
    model.loss_1n(e, rel, target).backward()
    for m in ('image', 'text'):
        assert model.representation.delta[m].grad.abs().sum() > 0
    assert model.node_emb.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('kwargs, name', [
    (dict(modality_weights={'image': 0.5, 'text': 0.6}), 'summing to at most 1'),
    (dict(modality_weights={'image': 0.5}), 'modality_weights'),
    (dict(modality_weights=[0.1]), 'modality_weights'),
    (dict(modality_weights={'image': -0.1, 'text': 0.1}), 'modality_weights'),
    (dict(scale=0.0), 'scale'), (dict(ot_entities=0), 'ot_entities'),
    (dict(ot_entities='some'), 'ot_entities'), (dict(ot_epsilon=-1.0), 'ot_epsilon'),
    (dict(ot_max_iter=0), 'ot_max_iter'), (dict(missing='drop'), 'missing'),
    (dict(ot_random='yes'), 'ot_random'), (dict(num_relations=0), 'num_relations')])
def test_bad_arguments(kwargs, name):
    feats, masks = features()
    args = dict(num_nodes=N, num_relations=R, hidden_channels=D, features=feats, masks=masks)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        OTKGE(**args)
    with pytest.raises(ValueError, match='modality'):
        OTKGE(N, R, D, {})


# The weighted-sum fusion (RSME and OTKGE) #####################################################


class _WeightedSumCase(FusionCase):
    cls = WeightedSumFusion
    missing = 'structure'

    def naive(self, stack, mask, rel):
        f = self.fusion
        out = []
        for b in range(stack.size(0)):
            w = f.weights[int(rel[b])] if f.relation_dependent else f.weights
            w = [float(x) for x in w]
            k = [bool(x) for x in mask[b]]
            if self.missing == 'structure':
                lost = sum(w[s] for s in range(1, len(w)) if not k[s])
                eff = [(w[0] + lost) if k[0] else 0.0] + [w[s] if k[s] else 0.0
                                                          for s in range(1, len(w))]
            elif self.missing == 'drop':
                eff = [w[s] if k[s] else 0.0 for s in range(len(w))]
            else:
                kept = sum(w[s] for s in range(len(w)) if k[s])
                eff = [w[s] * sum(w) / kept if k[s] else 0.0 for s in range(len(w))]
            row = torch.zeros(stack.size(-1), dtype=DT)
            for s in range(len(w)):
                if k[s]:
                    row += eff[s] * stack[b, s]
            out.append(row)
        return torch.stack(out)


class TestWeightedSumStructure(_WeightedSumCase):
    kwargs = dict(weights=[0.5, 0.25, 0.125])


class TestWeightedSumPerRelationRenormalized(_WeightedSumCase):
    missing = 'renormalize'
    kwargs = dict(weights=[[0.5, 0.25, 0.25], [0.25, 0.5, 0.125], [0.1, 0.2, 0.7]],
                  missing='renormalize')


class TestWeightedSumPerRelationDrop(_WeightedSumCase):
    missing = 'drop'
    kwargs = dict(weights=[[1.0, 1.0, 1.0], [0.3, 2.0, 1.0], [1.0, -1.0, 0.5]],
                  missing='drop')


def test_weighted_sum_arguments():
    with pytest.raises(ValueError, match='missing'):
        WeightedSumFusion(4, [0.5, 0.5], missing='mean')
    with pytest.raises(ValueError, match='weights'):
        WeightedSumFusion(4, torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match='num_relations'):
        WeightedSumFusion.build(4, 2, 3, weights=torch.ones(2, 2))
