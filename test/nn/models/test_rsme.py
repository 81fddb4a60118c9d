r"""RSME against naive transcriptions of its equations (research card baselines.md 2.5, the
authors' models.py, MRP.py and filter_gate.py, zjukg's RSME.py)."""
import math
from collections import defaultdict

import pytest
import torch

from torch_mmkg.nn import RSME
from torch_mmkg.nn.models.rsme import filter_gate, mean_rank_percentile, mrp_forget_gate

N, R, D = 8, 3, 2  # entities, relations, complex rank
DT = torch.float64


def features(F=3, seed=0, modalities=('image', )):
    gen = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(N, F + i, generator=gen) for i, m in enumerate(modalities)}
    masks = {m: torch.arange(N) % (3 + i) != 1 for i, m in enumerate(modalities)}
    return feats, masks


def make(seed=0, modalities=('image', ), **kwargs):
    feats, masks = features(modalities=modalities)
    torch.manual_seed(seed)
    model = RSME(N, R, D, feats, masks, **kwargs).to(DT)
    with torch.no_grad():  # O(1) values, so that every term matters
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=DT))
    return model.eval(), feats, masks


def c(v):
    r"""Complex coordinates of a real [re..., im...] list."""
    v = [float(x) for x in v]
    k = len(v) // 2
    return [complex(v[i], v[k + i]) for i in range(k)]


def complex_score(h, r, t):
    return sum(a * b * e.conjugate() for a, b, e in zip(c(h), c(r), c(t))).real


def cosine(x, y):
    x, y = [float(v) for v in x], [float(v) for v in y]
    nx, ny = math.sqrt(sum(v * v for v in x)), math.sqrt(sum(v * v for v in y))
    return sum(a * b for a, b in zip(x, y)) / (nx * ny)


def triples():
    h = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1, 4])
    r = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    t = torch.tensor([5, 4, 7, 1, 0, 2, 3, 6, 1, 7])
    return h, r, t


def naive_mix_score(model, feats, masks, h, r, t, alpha, beta, gate):
    r"""ê = (1 - α_r) e_s + α_r/M Σ_m x_m W_m over the modalities the entity has (their
    weight to e_s where missing); s = β ComplEx + (1 - β)/M Σ_m g_{r,m} cos(x_h, x_t)."""
    mods = list(feats)
    M = len(mods)
    rel = r % R

    def entity(e):
        out = [0.0] * (2 * D)
        a = float(alpha[rel]) if isinstance(alpha, torch.Tensor) else alpha
        w_s = 1.0 - a
        parts = []
        for m in mods:
            if bool(masks[m][e]):
                W = model.representation.projection.mlps[m][0].weight.detach()  # [2D, F]
                x = feats[m][e]
                parts.append([sum(float(W[k, f]) * float(x[f]) for f in range(x.numel()))
                              for k in range(2 * D)])
            else:
                w_s += a / M
        es = model.node_emb.weight[e]
        for k in range(2 * D):
            out[k] = w_s * float(es[k]) + sum(a / M * p[k] for p in parts)
        return out

    s = complex_score(entity(h), model.rel_emb.weight[r], entity(t))
    img = 0.0
    for k, m in enumerate(mods):
        if bool(masks[m][h]) and bool(masks[m][t]):
            img += float(gate[rel, k]) * cosine(feats[m][h], feats[m][t])
    return beta * s + (1 - beta) / M * img


@pytest.mark.parametrize('modalities', [('image', ), ('image', 'text')])
def test_score_is_the_papers_equation(modalities):
    gate = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[:, :len(modalities)]
    model, feats, masks = make(modalities=modalities, alpha=0.75, beta=0.5, forget_gate=gate)
    h, r, t = triples()
    got = model(h, r, t)
    for i in range(h.numel()):
        want = naive_mix_score(model, feats, masks, int(h[i]), int(r[i]), int(t[i]), 0.75, 0.5,
                               gate)
        assert got[i].item() == pytest.approx(want, abs=1e-10)
    # the reciprocal relation r + R: its own embedding, the same gate and alpha
    got = model(t, r + R, h)
    for i in range(h.numel()):
        want = naive_mix_score(model, feats, masks, int(t[i]), int(r[i]) + R, int(h[i]), 0.75,
                               0.5, gate)
        assert got[i].item() == pytest.approx(want, abs=1e-10)


def test_per_relation_alpha():
    alpha = torch.tensor([0.125, 0.5, 0.875])
    model, feats, masks = make(alpha=alpha, beta=0.8)
    assert model.fusion.relation_dependent
    h, r, t = triples()
    got = model(h, r, t)
    gate = torch.ones(R, 1)
    for i in range(h.numel()):
        want = naive_mix_score(model, feats, masks, int(h[i]), int(r[i]), int(t[i]), alpha,
                               0.8, gate)
        assert got[i].item() == pytest.approx(want, abs=1e-10)
    tails = model.score_tails(h, r)
    assert torch.allclose(tails[torch.arange(h.numel()), t], got, atol=1e-12)


def test_unmasked_is_the_authors_zero_rows():
    model, feats, masks = make(alpha=0.75, mask_missing=False)
    zeroed = {m: torch.where(masks[m][:, None], x, torch.zeros(())) for m, x in feats.items()}
    h, r, t = triples()
    # built on the zero-filled rows without a mask: (1 - alpha) e_s and cosine 0 where missing
    model2 = RSME(N, R, D, zeroed, None, alpha=0.75, mask_missing=False).to(DT).eval()
    with torch.no_grad():
        for p, q in zip(model2.parameters(), model.parameters()):
            p.copy_(q)
    got = model2(h, r, t)
    for i in range(h.numel()):
        hh, rr, tt = int(h[i]), int(r[i]), int(t[i])

        def entity(e):
            W = model2.representation.projection.mlps['image'][0].weight.detach()
            x = zeroed['image'][e]
            p = [sum(float(W[k, f]) * float(x[f]) for f in range(3)) for k in range(2 * D)]
            es = model2.node_emb.weight[e]
            return [0.25 * float(es[k]) + 0.75 * p[k] for k in range(2 * D)]
        img = 0.0
        if bool(masks['image'][hh]) and bool(masks['image'][tt]):
            img = cosine(feats['image'][hh], feats['image'][tt])
        want = 0.5 * complex_score(entity(hh), model2.rel_emb.weight[rr], entity(tt)) + 0.5 * img
        assert got[i].item() == pytest.approx(want, abs=1e-10)


def test_zjukg_concat_projected():
    model, feats, masks = make(combine='concat', similarity='projected', beta=0.95,
                               projection_bias=True, init_scale=None, mask_missing=False)
    assert model.rel_emb.weight.shape == (2 * R, 4 * D)  # relations of complex width 2d
    lin = model.representation.projection.mlps['image'][0]
    h, r, t = triples()
    got = model(h, r, t)
    for i in range(h.numel()):
        hh, rr, tt = int(h[i]), int(r[i]), int(t[i])

        def proj(e):
            x = feats['image'][e]
            return [float(lin.bias[k]) + sum(float(lin.weight[k, f]) * float(x[f])
                                             for f in range(3)) for k in range(2 * D)]

        def entity(e):  # zjukg: re = [e_re, p[:d]], im = [e_im, p[d:]]
            es, p = [float(v) for v in model.node_emb.weight[e]], proj(e)
            return es[:D] + p[:D] + es[D:] + p[D:]
        r_ = model.rel_emb.weight[rr]
        want = (0.95 * complex_score(entity(hh), r_, entity(tt)) +
                0.05 * cosine(proj(hh), proj(tt)))
        assert got[i].item() == pytest.approx(want, abs=1e-10)


def test_train_similarity_false_trains_complex_alone():
    gate = torch.ones(R, 1)
    model, feats, masks = make(alpha=0.75, beta=0.5, train_similarity=False)
    h, r, t = triples()
    full = model.eval()(h, r, t)
    train = model.train()(h, r, t)
    for i in range(h.numel()):
        want_eval = naive_mix_score(model, feats, masks, int(h[i]), int(r[i]), int(t[i]), 0.75,
                                    0.5, gate)
        want_train = naive_mix_score(model, feats, masks, int(h[i]), int(r[i]), int(t[i]), 0.75,
                                     1.0, gate)  # beta = 1: the ComplEx term, unscaled
        assert full[i].item() == pytest.approx(want_eval, abs=1e-10)
        assert train[i].item() == pytest.approx(want_train, abs=1e-10)
    tails = model.train().score_tails(h, r)
    assert torch.allclose(tails[torch.arange(h.numel()), t], train, atol=1e-12)


def test_one_to_n_loss_and_n3():
    model, feats, masks = make(alpha=0.75, regularization_weight=0.01)
    model.train()
    e, rel = torch.tensor([0, 3, 5]), torch.tensor([1, 4, 2])  # 4: an inverse relation
    target = torch.zeros(3, N)
    target[0, 2] = target[1, 1] = target[1, 6] = target[2, 0] = 1.0
    loss = model.loss_1n(e, rel, target)
    gate = torch.ones(R, 1)
    ce, n3 = 0.0, 0.0
    for b in range(3):
        logits = [naive_mix_score(model, feats, masks, int(e[b]), int(rel[b]), n, 0.75, 0.5,
                                  gate) for n in range(N)]
        lse = math.log(sum(math.exp(x) for x in logits))
        pos = [n for n in range(N) if target[b, n] > 0]
        ce += -sum(logits[n] - lse for n in pos) / len(pos)
        q = model.entity(e[b:b + 1])[0, :2 * D]  # the fused query entity, complex part
        rr = model.rel_emb.weight[rel[b]]
        n3 += sum(abs(z) ** 3 for z in c(q)) + sum(abs(z) ** 3 for z in c(rr))
    want = ce / 3 + 0.01 * n3 / 3
    assert loss.item() == pytest.approx(want, rel=1e-9)


# The forget gate (MRP) and the filter gate ####################################################


def naive_mrp(h, r, t, feats, mask, num_relations, single=True):
    r"""The authors' MRP.py, transcribed: 1-1-1 triples, candidates = their tails with a
    feature, per relation and head the mean rank percentile of its true tails."""
    trip = list(zip(h.tolist(), r.tolist(), t.tolist()))
    pairs = defaultdict(list)
    for a, b, e in trip:
        pairs[(a, e)].append((a, b, e))
    kept = [v[0] for v in pairs.values() if len(v) == 1] if single else trip
    tails = sorted({e for _, _, e in kept if bool(mask[e])})
    out = []
    for rel in range(num_relations):
        h_t = defaultdict(list)
        for a, b, e in kept:
            if b == rel and e in tails:
                h_t[a].append(e)
        ranks = []
        for a in sorted(h_t):
            if not bool(mask[a]):
                continue
            score = {c_: cosine(feats[a], feats[c_]) for c_ in tails}
            per = []
            for e in h_t[a]:
                rank = 1 + sum(1 for c_ in tails if score[c_] > score[e])
                per.append(rank)
            ranks.append(sum(per) / len(per) / len(tails))
        out.append(sum(ranks) / len(ranks) if ranks else float('nan'))
    return out


@pytest.mark.parametrize('single', [True, False])
def test_mean_rank_percentile_brute_force(single):
    gen = torch.Generator().manual_seed(3)
    n, T = 15, 60
    h = torch.randint(0, n, (T, ), generator=gen)
    r = torch.randint(0, 4, (T, ), generator=gen)
    t = torch.randint(0, n, (T, ), generator=gen)
    x = torch.randn(n, 5, generator=gen)
    mask = torch.arange(n) % 4 != 2
    got = mean_rank_percentile(h, r, t, x, mask, 5, single)
    want = naive_mrp(h, r, t, x, mask, 5, single)
    for a, b in zip(got.tolist(), want):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)
    assert math.isnan(got[4])  # a relation without triples
    gate, mrp = mrp_forget_gate(h, r, t, x, mask, 5, 0.4, single)
    assert gate.tolist() == [1.0 if (not math.isnan(v) and v <= 0.4) else 0.0 for v in want]


def test_mrp_finds_a_visual_relation():
    # relation 0 links entities with the same image, relation 1 random ones
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=gen)
    x = torch.cat([base, base + 0.01 * torch.randn(6, 8, generator=gen)])  # e and e + 6
    h = torch.cat([torch.arange(6), torch.arange(6)])
    t = torch.cat([torch.arange(6) + 6, torch.randperm(6, generator=gen) + 6])
    r = torch.cat([torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)])
    t[6:] = torch.tensor([8, 10, 6, 11, 7, 9])  # no head linked to its own twin
    gate, mrp = mrp_forget_gate(h, r, t, x, None, 2, 0.2)
    assert mrp[0] == pytest.approx(1 / 6) and mrp[1] > 0.2
    assert gate.tolist() == [1.0, 0.0]


def test_from_data_uses_training_triples_only():
    from torch_mmkg.data import get_triples
    from torch_mmkg.datasets.fake import FakeMMKGDataset
    data = FakeMMKGDataset(num_entities=20, num_relations=3, num_clusters=4, num_triples=120,
                           modalities={'image': 6}, seed=0)[0]
    model = RSME.from_data(data, 4, mrp_threshold=0.5)
    from torch_mmkg.data.mmkg import modality_features
    x, mask = modality_features(data)['image']
    for split, same in (('train', True), (['train', 'val', 'test'], None)):
        h, r, t = get_triples(data, split)
        gate = mrp_forget_gate(h, r, t, x, mask, 3, 0.5)[0]
        if same:
            assert torch.equal(model.forget_gate[:3, 0], gate)
    assert torch.equal(model.forget_gate[3:], model.forget_gate[:3])  # inverses share it
    none = RSME.from_data(data, 4, forget_gate='none')
    assert bool((none.forget_gate == 1).all())
    with pytest.raises(ValueError, match='forget_gate'):
        RSME.from_data(data, 4, forget_gate='sometimes')


def test_filter_gate_brute_force():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, 3, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0],
                         [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    got, has = filter_gate(x, mask)
    for e in range(6):
        ks = [k for k in range(4) if mask[e, k]]
        if not ks:
            assert not has[e] and bool((got[e] == 0).all())
            continue
        best, best_sum = ks[0], None
        for k in ks:
            s = sum(cosine(x[e, k], x[e, j]) for j in ks if j != k)
            if best_sum is None or s > best_sum:
                best, best_sum = k, s
        assert has[e] and torch.equal(got[e], x[e, best])


# Arguments ####################################################################################


@pytest.mark.parametrize('kwargs, name', [
    (dict(alpha=1.5), 'alpha'), (dict(alpha=torch.ones(2)), 'alpha'),
    (dict(beta=-0.1), 'beta'), (dict(combine='sum'), 'combine'),
    (dict(similarity='text'), 'similarity'), (dict(forget_gate=torch.ones(2)), 'forget_gate'),
    (dict(forget_gate=torch.ones(R, dtype=torch.long)), 'forget_gate'),
    (dict(init_scale=0.0), 'init_scale'), (dict(train_similarity=1), 'train_similarity'),
    (dict(hidden_channels=0), 'hidden_channels')])
def test_bad_arguments(kwargs, name):
    feats, masks = features()
    args = dict(num_nodes=N, num_relations=R, hidden_channels=D, features=feats, masks=masks)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        RSME(**args)


def test_needs_a_modality():
    with pytest.raises(ValueError, match='modality'):
        RSME(N, R, D, {})
    with pytest.raises(ValueError, match='threshold'):
        mrp_forget_gate(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                        torch.zeros(1, dtype=torch.long), torch.randn(1, 2), None, 1, 1.5)
