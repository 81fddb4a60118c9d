import math
from types import SimpleNamespace

import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import NATIVE
from torch_mmkg.testing import assert_scoring_consistent, planted_mrr_gain

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
    assert_scoring_consistent(model, h, r, t)


def test_missing_features_never_enter_the_score():
    model, feats, masks = make()
    model.eval()
    h, r, t = triples()
    before = model(h, r, t).detach()
    # overwrite the features of entities that lack 'text' with garbage
    x = getattr(model.representation, 'x_text')
    x[~masks['text']] = 1e3 * torch.randn(int((~masks['text']).sum()), 5)
    assert torch.allclose(model(h, r, t), before, atol=1e-5)
    # the paper's behaviour (no masking) does see them
    plain = make(mask_missing=False)[0].eval()
    before = plain(h, r, t).detach()
    getattr(plain.representation, 'x_text')[~masks['text']] += 5.0
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
    assert all(p.grad is not None for p in model.representation.projection.parameters())


def test_bad_input():
    with pytest.raises(ValueError, match="'text' contain NaN"):
        NATIVE(N, R, 4, {'text': torch.full((N, 2), float('nan'))})
    with pytest.raises(ValueError, match=r"must be \[20, F\]"):
        NATIVE(N, R, 4, {'text': torch.randn(N + 1, 2)})
    with pytest.raises(ValueError, match='bool'):
        NATIVE(N, R, 4, {'text': torch.randn(N, 2)}, {'text': torch.ones(N)})


def test_learns_planted_signal(single_thread):
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4,
                           num_triples=600, modalities={'image': 8, 'text': 6}, seed=1)[0]
    torch.manual_seed(0)
    model = NATIVE.from_data(data, 8, margin=2.0)
    before, after = planted_mrr_gain(model, data)
    assert after > before + 0.1


def _naive_joint(model, index, rel):
    # the fusions written out per entity from the projected stack
    stack, mask = model.modality_stack(index)
    out = []
    for b in range(index.numel()):
        s, m = stack[b], mask[b]
        kind = model.fusion.__class__.__name__
        if kind == 'MeanFusion':
            out.append(s[m].mean(0))
        elif kind == 'ProductFusion':
            out.append(torch.prod(s[m], dim=0))
        elif kind == 'ConcatFusion' and model.fusion.lin is None:  # the authors' "concat"
            out.append(torch.where(m[:, None], s, torch.zeros_like(s)).reshape(-1))
        elif kind == 'ConcatFusion':
            z = torch.where(m[:, None], s, torch.zeros_like(s)).reshape(-1)
            out.append(model.fusion.lin.weight @ z + model.fusion.lin.bias)
        else:
            logit = torch.tanh(s) @ model.fusion.v
            if model.fusion.zeta is not None:
                logit = logit / torch.sigmoid(model.fusion.zeta[rel[b]])
            logit = logit.masked_fill(~m, float('-inf'))
            out.append((torch.softmax(logit, 0)[:, None] * s).sum(0))
    return torch.stack(out)


@pytest.mark.parametrize('kwargs', [{}, {'relation_temperature': False}, {'fusion': 'mean'},
                                    {'fusion': 'concat'}, {'fusion': 'concat_linear'},
                                    {'fusion': 'product'}, {'projection_layers': 1},
                                    {'init': 'rotate', 'regularization_style': 'positives'}])
def test_ablation_switches(kwargs):
    model = make(**kwargs)[0].double().eval()
    h, r, t = triples(10, seed=2)
    with torch.no_grad():
        assert torch.allclose(model.joint(h, r), _naive_joint(model, h, r), atol=1e-10)
        s = model(h, r, t)
        assert torch.allclose(model.score_tails(h, r).gather(1, t[:, None]).view(-1), s,
                              atol=1e-8)
        assert torch.allclose(model.score_heads(r, t).gather(1, h[:, None]).view(-1), s,
                              atol=1e-8)
        neg = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(3))(h, r, t)
        pos, scores = model.score_negatives(h, r, t, neg)
        ch = neg.corrupt_head[:, None]
        hh, tt = torch.where(ch, neg.index, h[:, None]), torch.where(ch, t[:, None], neg.index)
        assert torch.allclose(pos, s, atol=1e-8)
        assert torch.allclose(scores, model(hh, r[:, None].expand_as(hh), tt), atol=1e-8)
    # the switches build what they name
    layers = [type(m) for m in model.representation.projection.mlps['text']]
    assert layers == ([torch.nn.Linear] if kwargs.get('projection_layers') == 1 else
                      [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear])
    with_zeta = kwargs.get('fusion', 'adaptive') == 'adaptive' and kwargs.get(
        'relation_temperature', True)
    assert (getattr(model.fusion, 'zeta', None) is not None) == with_zeta
    assert model.fusion.relation_dependent == with_zeta
    # relation-free fusions give one entity representation for every relation
    if not with_zeta:
        assert torch.allclose(model.joint(h, torch.zeros_like(r)),
                              model.joint(h, torch.full_like(r, 2)))
    loss = model.train().loss(h, r, t, neg)
    loss.backward()
    assert all(p.grad is not None for p in model.representation.projection.parameters())


def test_unknown_fusion_and_modalities():
    with pytest.raises(ValueError, match='fusion must be a registered fusion'):
        make(fusion='nope')
    data = FakeMMKGDataset(num_entities=20, num_relations=2, num_triples=60,
                           modalities={'image': 4, 'text': 3}, seed=0)[0]
    assert NATIVE.from_data(data, 4, modalities=['text']).modalities == ['text']
    with pytest.raises(ValueError, match=r"\['audio'\] are not in the graph"):
        NATIVE.from_data(data, 4, modalities=['audio'])


@pytest.mark.parametrize('num_modalities', [1, 5])
def test_any_number_of_modalities_with_holes_trains(num_modalities, single_thread):
    names = ['numeric', 'audio', 'text', 'image', 'video'][:num_modalities]
    g = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(N, 3 + i, generator=g) for i, m in enumerate(names)}
    masks = {m: torch.rand(N, generator=g) > 0.3 for m in names}
    torch.manual_seed(0)
    model = NATIVE(N, R, 4, feats, masks, margin=2.0)
    stack, mask = model.modality_stack()
    assert stack.shape == (N, num_modalities + 1, 8) and torch.equal(mask[:, 0],
                                                                     torch.ones(N, dtype=bool))
    h, r, t = triples(32, seed=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sampler = NegativeSampler(N, 4, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(h, r, t, sampler(h, r, t))
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_concat_ablation_is_the_authors():
    # "w/ concat" as the authors ran it: the joint entity is the raw concatenation of the
    # M + 1 slots (a complex vector of (M + 1) d coordinates, its first half the real
    # parts), scored by RotatE with relations of (M + 1) d phases in
    # +-(gamma + epsilon) / ((M + 1) d)
    model = make(fusion='concat', margin=4.0)[0].double().eval()
    S, d, rho = 3, 4, 6.0
    assert model.fusion.lin is None and model.fusion.output_width(2 * d) == S * 2 * d
    assert model.rel_emb.weight.shape == (R, S * d)
    assert model.relation_range == rho / (S * d)
    assert model.rel_emb.weight.abs().max() <= rho / (S * d)
    assert model.node_emb.weight.abs().max() <= rho / (2 * d)
    h, r, t = triples(6, seed=3)
    with torch.no_grad():
        stack, mask = model.modality_stack(torch.cat([h, t]))
        joint = torch.where(mask[..., None], stack, torch.zeros_like(stack)).flatten(1)
        score = model(h, r, t)
    n = S * d
    for b in range(6):
        x, y = joint[b], joint[6 + b]
        dist = 0.0
        for k in range(n):
            theta = math.pi * float(model.rel_emb.weight[r[b], k]) / model.relation_range
            z = (complex(x[k], x[n + k]) * complex(math.cos(theta), math.sin(theta)) -
                 complex(y[k], y[n + k]))
            dist += abs(z)
        assert abs(float(score[b]) - (4.0 - dist)) < 1e-9
    # torch_mmkg's earlier concatenation, mapped back to 2d, stays available
    linear = make(fusion='concat_linear')[0]
    assert linear.fusion.lin is not None and linear.rel_emb.weight.shape == (R, d)


def test_initialisation_is_the_authors():
    # entities U(+-rho_e), rho_e = (gamma + eps) / (2d); relations U(+-rho_r), rho_r =
    # (gamma + eps) / d; v as nn.Linear(2d, 1, bias=False), U(+-1/sqrt(2d)); zeta_r U(+-rho_e)
    torch.manual_seed(0)
    feats = {'text': torch.randn(N, 5)}
    d, R_ = 32, 50
    rho_e, rho_r, bound_v = 6.0 / (2 * d), 6.0 / d, (2 * d)**-0.5

    def spans(x, bound):
        return bool(x.abs().max() <= bound) and bool(x.abs().max() > 0.9 * bound)

    model = NATIVE(N, R_, d, feats, margin=4.0, epsilon=2.0)
    assert spans(model.node_emb.weight, rho_e)
    assert spans(model.rel_emb.weight, rho_r)
    assert spans(model.fusion.v, bound_v)
    assert spans(model.fusion.zeta, rho_e)
    # the phases still cover (-pi, pi)
    assert torch.allclose(model.relation(torch.arange(R_)),
                          model.rel_emb.weight * math.pi / rho_r)
    # torch_mmkg's earlier initialisation
    old = NATIVE(N, R_, d, feats, margin=4.0, epsilon=2.0, init='rotate')
    assert spans(old.node_emb.weight, rho_r) and spans(old.rel_emb.weight, rho_r)
    assert old.fusion.v.abs().max() > bound_v  # N(0, 1/2d): some beyond 1/sqrt(2d)
    assert not old.fusion.zeta.any()
    with pytest.raises(ValueError, match="init must be one of 'authors', 'rotate'"):
        NATIVE(N, R_, d, feats, init='paper')


@pytest.mark.parametrize('style', ['authors', 'positives'])
def test_l2_penalty(style):
    # authors (the default): lambda (mean h^2 + mean t^2 + mean r^2) / 3 over the raw
    # structural embeddings of the positives and the negatives (OpenKE's batch_h / batch_t)
    # and the raw relations; positives: lambda (mean h^2 + mean t^2 + mean r^2) over the
    # positives
    kwargs = {} if style == 'authors' else {'regularization_style': style}
    model = make(regularization_weight=0.5, **kwargs)[0].double()
    E, Rel = model.node_emb.weight.detach(), model.rel_emb.weight.detach()
    h, r, t = triples(6, seed=5)
    neg = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(2))(h, r, t)

    def mean_sq(rows):
        return sum(float(x @ x) for x in rows) / (len(rows) * rows[0].numel())

    heads, tails = [], []
    for b in range(6):
        heads.append(E[h[b]])
        tails.append(E[t[b]])
        if style == 'authors':
            for k in range(5):
                corrupt = bool(neg.corrupt_head[b])
                heads.append(E[neg.index[b, k]] if corrupt else E[h[b]])
                tails.append(E[t[b]] if corrupt else E[neg.index[b, k]])
    total = mean_sq(heads) + mean_sq(tails) + mean_sq([Rel[x] for x in r])
    want = 0.5 * (total / 3 if style == 'authors' else total)
    got = model.score_batch(h, r, t, neg).terms['regularization']
    assert abs(float(got) - want) < 1e-12
    if style == 'authors':  # the grid path (relation-aware queries) gives the same penalty
        grid = model._grid_negatives(h, r, t, neg).terms['regularization']
        assert abs(float(grid) - want) < 1e-12
    # 1-N: the query entities and relations
    q = mean_sq([E[x] for x in h]) + mean_sq([Rel[x] for x in r])
    got = model.score_queries(h, r).terms['regularization']
    assert abs(float(got) - 0.5 * (q / 2 if style == 'authors' else q)) < 1e-12
    if style == 'authors':  # a side drawn per negative ([B, K] corrupt_head)
        side = torch.rand(6, 5, generator=torch.Generator().manual_seed(4)) < 0.5
        H, T = model._negative_grid(h, t, SimpleNamespace(index=neg.index, corrupt_head=side))
        assert torch.equal(H[:, 1:], torch.where(side, neg.index, h[:, None]))
        assert torch.equal(T[:, 1:], torch.where(side, t[:, None], neg.index))
        assert torch.equal(H[:, 0], h) and torch.equal(T[:, 0], t)
