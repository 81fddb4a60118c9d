r"""MoSE: naive transcriptions of the modality split, the per-modality ComplEx scores and
average, the loss (CE + N3 per modality), the boosting weights (BI) as the authors' loops
compute them, and the ensembles' use of validation triples only."""
import copy
import math

import pytest
import torch

from torch_mmkg.data import KnownTriples, build_mmkg, get_triples
from torch_mmkg.data.mmkg import REL
from torch_mmkg.datasets.fake import FakeMMKGDataset
from torch_mmkg.evaluation import RankingEvaluator
from torch_mmkg.nn import MoSE, MoSEEnsemble

N, R, D = 12, 2, 3


def _features(n=N):
    gen = torch.Generator().manual_seed(7)
    feats = {'image': torch.randn(n, 5, generator=gen), 'text': torch.randn(n, 4, generator=gen)}
    masks = {'image': torch.arange(n) % 3 != 0, 'text': torch.arange(n) % 4 != 1}
    return feats, masks


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    feats, masks = _features()
    kwargs.setdefault('init_size', 0.3)
    model = MoSE(N, R, D, feats, masks, **kwargs).double()
    return model.eval()


def _complex_score(h, r, t):
    d = h.numel() // 2
    h, r, t = h.tolist(), r.tolist(), t.tolist()
    return sum((complex(h[k], h[d + k]) * complex(r[k], r[d + k]) *
                complex(t[k], t[d + k]).conjugate()).real for k in range(d))


def _split_entity(model, e, m):
    r"""e^m = [(1 - alpha) e_s + alpha x_m W_m] / tau, written out."""
    es = model.representation.node_emb.weight[e].tolist()
    if m == 'structure':
        return torch.tensor(es, dtype=torch.float64)
    x = model.representation.features(m)[e].tolist()
    W = model.representation.projection.mlps[m][0].weight.tolist()  # [2d, F]
    proj = [sum(W[o][i] * x[i] for i in range(len(x))) for o in range(len(W))]
    a, tau = model.alpha, model.scale
    return torch.tensor([((1 - a) * s + a * p) / tau for s, p in zip(es, proj)],
                        dtype=torch.float64)


def _naive_views(model, h, r, t):
    out = []
    for i, m in enumerate(model.slots):
        present = (m == 'structure' or not model.mask_missing or
                   bool(model.representation.mask(m)[h] and model.representation.mask(m)[t]))
        out.append((present, _complex_score(_split_entity(model, h, m), model.rel_emb[i, r],
                                            _split_entity(model, t, m))))
    return out


@pytest.mark.parametrize('kwargs', [{}, dict(alpha=0.3, scale=2.0, mask_missing=False)])
def test_modality_split_and_average_scores(kwargs):
    model = _model(**kwargs)
    h, r, t = torch.tensor([0, 4, 5, 7]), torch.tensor([0, 1, 3, 2]), torch.tensor([3, 5, 9, 1])
    with torch.no_grad():
        got = model(h, r, t)
        stack, _ = model.representation(h)
    for b in range(h.numel()):
        for i, m in enumerate(model.slots):
            present = m == 'structure' or not model.mask_missing or bool(
                model.representation.mask(m)[h[b]])
            if present:
                assert torch.allclose(stack[b, i], _split_entity(model, int(h[b]), m))
        views = [s for p, s in _naive_views(model, int(h[b]), int(r[b]), int(t[b])) if p]
        assert abs(float(got[b]) - sum(views) / len(views)) < 1e-10


def test_loss_is_ce_plus_n3_per_modality():
    model = _model(mask_missing=False, regularization_weight=0.05)
    e, r = torch.tensor([0, 3, 3]), torch.tensor([1, 0, 2])
    target = torch.zeros(3, N, dtype=torch.float64)
    target[0, [2, 5]] = 1
    target[1, 4] = 1
    target[2, [0, 1, 11]] = 1
    got = model.loss_1n(e, r, target)
    want = 0.0
    for i, m in enumerate(model.slots):
        ce = n3 = 0.0
        for b in range(3):
            s = [_complex_score(_split_entity(model, int(e[b]), m), model.rel_emb[i, r[b]],
                                _split_entity(model, n, m)) for n in range(N)]
            lse = math.log(sum(math.exp(x) for x in s))
            y = target[b] / target[b].sum()
            ce += -sum(float(y[n]) * (s[n] - lse) for n in range(N)) / 3
            for x in (_split_entity(model, int(e[b]), m), model.rel_emb[i, r[b]]):
                re, im = x[:D], x[D:]
                n3 += sum(math.sqrt(float(a)**2 + float(c)**2)**3 for a, c in zip(re, im)) / 3
        want += ce + 0.05 * n3
    assert abs(float(got) - want) < 1e-9


def test_arguments_are_validated():
    feats, masks = _features()
    for kwargs, name in ((dict(alpha=1.5), 'alpha'), (dict(scale=0.0), 'scale'),
                         (dict(init_size=-1.0), 'init_size'),
                         (dict(regularization_weight=-0.1), 'regularization_weight')):
        with pytest.raises(ValueError, match=name):
            MoSE(N, R, D, feats, masks, **kwargs)
    with pytest.raises(ValueError, match='method'):
        MoSEEnsemble('vote')
    with pytest.raises(ValueError, match='min_queries'):
        MoSEEnsemble(min_queries=0)
    with pytest.raises(RuntimeError, match='fit'):
        MoSEEnsemble().score_tails(torch.tensor([0]), torch.tensor([0]))


# The ensembles ################################################################################


def _data(seed=0):
    return FakeMMKGDataset(num_entities=N, num_relations=R, num_clusters=3, num_triples=90,
                           modalities={'image': 5, 'text': 4}, seed=seed)[0]


def _naive_boosting(model, data, split, min_queries):
    r"""The authors' weight_learning.py, written as loops over dense filtered score matrices
    [M, T_r, E] per relation (filter: train and validation triples; target filtered too)."""
    h, r, t = get_triples(data, split)
    known = KnownTriples.from_data(data, ['train', 'val'])
    E, M = model.num_nodes, len(model.slots)
    queries = [(int(a), int(b), int(c)) for a, b, c in zip(h, r, t)]
    queries += [(int(c), int(b) + R, int(a)) for a, b, c in zip(h, r, t)]
    weights = torch.zeros(M, 2 * R, dtype=torch.float64)
    with torch.no_grad():
        for rel in range(2 * R):
            qs = [q for q in queries if q[1] == rel]
            if len(qs) < min_queries:
                weights[:, rel] = 1.0 / M
                continue
            e = torch.tensor([q[0] for q in qs])
            scores, judged = model.view_scores(e, torch.full_like(e, rel))
            T = len(qs)
            p = [[[0.0] * E for _ in range(T)] for _ in range(M)]
            for m in range(M):
                for i, (q, _, ans) in enumerate(qs):
                    if rel < R:
                        fq, fe = known.tails(torch.tensor([q]), torch.tensor([rel]))
                    else:
                        fq, fe = known.heads(torch.tensor([rel - R]), torch.tensor([q]))
                    filt = set(fe.tolist()) | {ans}
                    target = float(scores[m, i, ans])
                    for n in range(E):
                        s = -1e6 if n in filt else float(scores[m, i, n])
                        ok = bool(judged[m, i, n]) and bool(judged[m, i, ans])
                        p[m][i][n] = (-1.0 if s >= target else 1.0) if ok else 0.0
            D_ = [[1.0 / E] * E for _ in range(T)]
            last = [0.0] * M
            for _ in range(M):
                alpha = []
                for m in range(M):
                    wrong = sum(D_[i][n] for i in range(T) for n in range(E) if p[m][i][n] == -1)
                    right = sum(D_[i][n] for i in range(T) for n in range(E) if p[m][i][n] == 1)
                    alpha.append(0.5 * math.log((right + 1e-10) / (wrong + 1e-10)))
                order = sorted(range(M), key=lambda m: -alpha[m])
                best = next(m for m in order if last[m] <= 0)
                last[best] += alpha[best]
                D_ = [[D_[i][n] * math.exp(-alpha[best] * p[best][i][n]) for n in range(E)]
                      for i in range(T)]
                Z = sum(map(sum, D_))
                D_ = [[x / Z for x in row] for row in D_]
            weights[:, rel] = torch.tensor(last)
    return weights


@pytest.mark.parametrize('mask_missing', [True, False])
def test_boosting_weights_equal_the_authors_loops(mask_missing):
    data = _data()
    model = MoSE.from_data(data, D, mask_missing=mask_missing, init_size=0.5).double().eval()
    ens = MoSEEnsemble('boosting', min_queries=3, batch_size=4).fit(model, data, split='val')
    want = _naive_boosting(model, data, 'val', 3)
    assert not torch.allclose(want, torch.full_like(want, 1 / 3)), "a trivial problem"
    assert torch.allclose(ens.weights, want, atol=1e-9), (ens.weights, want)
    few = MoSEEnsemble('boosting', min_queries=10**6).fit(model, data, split='val')
    assert torch.equal(few.weights, torch.full_like(want, 1 / 3))  # too few: equal weights


def test_ensembles_refuse_other_splits_and_models():
    data = _data()
    model = MoSE.from_data(data, D).double()
    for split in ('test', 'train', 'all', ['val', 'test']):
        with pytest.raises(ValueError, match='validation triples only'):
            MoSEEnsemble().fit(model, data, split=split)
    from torch_mmkg.nn import ComplEx
    with pytest.raises(ValueError, match='MoSE model'):
        MoSEEnsemble().fit(ComplEx(N, R, D), data, split='val')


@pytest.mark.parametrize('method', ['boosting', 'meta'])
def test_test_triples_never_matter(method):
    r"""Replacing every test triple by another one changes nothing that is fitted."""
    data = _data()
    other = copy.deepcopy(data)
    test = data[REL].test_mask
    ei = data[REL].edge_index.clone()
    gen = torch.Generator().manual_seed(3)
    ei[:, test] = torch.randint(0, N, (2, int(test.sum())), generator=gen)
    et = data[REL].edge_type.clone()
    et[test] = (et[test] + 1) % R
    other[REL].edge_index, other[REL].edge_type = ei, et
    assert not torch.equal(other[REL].edge_index, data[REL].edge_index)
    model = MoSE.from_data(data, D, init_size=0.5).double().eval()
    a = MoSEEnsemble(method, min_queries=2, epochs=2).fit(model, data)  # val_clean
    b = MoSEEnsemble(method, min_queries=2, epochs=2).fit(model, other)
    if method == 'boosting':
        assert torch.equal(a.weights, b.weights)
    else:
        for p, q in zip(a.meta.parameters(), b.meta.parameters()):
            assert torch.equal(p, q)


def test_average_ensemble_is_the_model_score():
    data = _data()
    model = MoSE.from_data(data, D, init_size=0.5).double().eval()
    ens = MoSEEnsemble('average').fit(model, data, split='val')
    h, r, _ = get_triples(data, 'test')
    assert torch.allclose(ens.score_tails(h, r), model.score_tails(h, r), atol=1e-12)
    assert torch.allclose(ens.score_heads(r, h), model.score_heads(r, h), atol=1e-12)


def _planted():
    r"""One relation, t = h + 1 (mod N); the image view is planted correct (one-hot image
    features, frequencies k theta: phi = sum_k cos(k theta (h + 1 - t))), the structure and
    text views are large noise."""
    Np, d = 12, 4
    h = torch.arange(Np)
    triples = torch.stack([h, torch.zeros_like(h), (h + 1) % Np], dim=1)
    perm = torch.randperm(Np, generator=torch.Generator().manual_seed(0))
    splits = {'train': triples[perm[:4]], 'val': triples[perm[4:8]], 'test': triples[perm[8:]]}
    gen = torch.Generator().manual_seed(1)
    feats = {'image': torch.eye(Np), 'text': torch.randn(Np, 5, generator=gen)}
    data = build_mmkg(Np, 1, splits, feats)
    torch.manual_seed(0)
    model = MoSE.from_data(data, d, scale=1.0, init_size=1.0).double().eval()
    theta = 2 * math.pi / Np
    k = torch.arange(1, d + 1, dtype=torch.float64)
    e = torch.arange(Np, dtype=torch.float64)[:, None] * k * theta
    with torch.no_grad():
        model.representation.projection.mlps['image'][0].weight.copy_(
            torch.cat([e.cos(), e.sin()], dim=1).t())
        model.representation.projection.mlps['text'][0].weight.mul_(3.0)
        i = model.slots.index('image')
        model.rel_emb[i, 0] = torch.cat([(k * theta).cos(), (k * theta).sin()])
        model.rel_emb[i, 1] = torch.cat([(k * theta).cos(), -(k * theta).sin()])
    return model, data


def test_planted_view_ensembles_beat_the_average():
    model, data = _planted()
    evaluator = RankingEvaluator(KnownTriples.from_data(data))
    test = get_triples(data, 'test')

    def mrr(ens):
        return evaluator.evaluate(ens, *test).metrics()['mrr']
    ai = mrr(MoSEEnsemble('average').fit(model, data, split='val'))
    bi_ens = MoSEEnsemble('boosting', min_queries=2).fit(model, data, split='val')
    bi = mrr(bi_ens)
    mi = mrr(MoSEEnsemble('meta').fit(model, data, split='val'))
    assert mrr(model) == pytest.approx(ai)
    image = model.slots.index('image')
    assert bool((bi_ens.weights.argmax(dim=0) == image).all()), bi_ens.weights
    assert bi == 1.0 and bi > ai, (ai, bi)
    assert mi > ai, (ai, mi)
