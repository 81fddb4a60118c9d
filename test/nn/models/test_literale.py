r"""LiteralE (Kristiadi et al., ISWC 2019) against naive transcriptions of its equations, in
float64 on small random tensors, entity by entity and triple by triple."""
import math

import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.nn import BCELoss, LiteralE
from torch_mmkg.nn.models._literals import prepare_literals, presence_layout

N, R, D, A = 12, 3, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def tables():
    r"""A numeric [values | presence] table (entities 0, 6 and 9 have no attribute, others
    miss some) and a dense text vector (entities 1, 5, 9 without): entity 9 has no literal."""
    gen = torch.Generator().manual_seed(11)
    present = torch.rand(N, A, generator=gen) > 0.3
    present[[0, 6, 9]] = False
    present[2] = True
    values = (torch.randn(N, A, generator=gen) * 3 + 1) * present
    numeric = torch.cat([values, present.float()], dim=1)
    text = torch.randn(N, 5, generator=gen)
    masks = {'numeric': present.any(1), 'text': torch.arange(N) % 4 != 1}
    return {'numeric': numeric, 'text': text}, masks


def make(**kwargs):
    features, masks = tables()
    torch.manual_seed(0)
    model = LiteralE(N, R, D, features, masks, **kwargs).double().eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a non-zero gate bias, so that a dropped b would show
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model, features, masks


def naive_literals(features, masks, normalize=True):
    r"""The literal vector of every entity, a list of lists: per attribute of the numeric
    table the min-max normalised value over the entities that have it (0 if missing), then
    the text vector (0 where the entity has no text)."""
    numeric, present = features['numeric'][:, :A], features['numeric'][:, A:] > 0.5
    out = [[] for _ in range(N)]
    for i in range(A):
        have = [float(numeric[e, i]) for e in range(N) if present[e, i]]
        lo, hi = min(have), max(have)
        for e in range(N):
            v = float(numeric[e, i])
            if not present[e, i]:
                out[e].append(0.0)
            else:
                out[e].append((v - lo) / (hi - lo + 1e-8) if normalize else v)
    for e in range(N):
        has = bool(masks['text'][e])
        out[e] += [float(x) if has else 0.0 for x in features['text'][e]]
    return out


def matvec(W, x):
    W = W.detach()
    return [sum(float(W[k, j]) * x[j] for j in range(len(x))) for k in range(W.shape[0])]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def naive_g(model, e, lit, part=0, has=True):
    r"""Eq. 4 for one entity (one part of a complex embedding): the gate z and the fused
    embedding, with W_h [e; l] as one matrix of the concatenation."""
    d = model.hidden_channels
    fusion, rep = model.fusion, model.representation
    rows = slice(part * d, (part + 1) * d)
    if not has and model.mask_missing:
        return None, list(e)
    if model.gate:
        W_e, b = fusion.gate_weight[part], fusion.gate_bias[part]
        W_l = rep.maps[0][rows]
        W_h = torch.cat([fusion.weight[part], rep.maps[1][rows]], dim=1)  # [d, d + L]
        b_h = fusion.bias[part]
        ze, zl = matvec(W_e, e), matvec(W_l, lit)
        z = [sigmoid(ze[k] + zl[k] + float(b.detach()[k])) for k in range(d)]
        hh = matvec(W_h, list(e) + list(lit))
        h = [math.tanh(hh[k] + float(b_h.detach()[k])) for k in range(d)]
        return z, [(1 - z[k]) * e[k] + z[k] * h[k] for k in range(d)]
    W = torch.cat([fusion.weight[part], rep.maps[0][rows]], dim=1)
    y = matvec(W, list(e) + list(lit))
    return None, [y[k] + float(fusion.bias.detach()[part][k]) for k in range(d)]


def naive_fused(model, features, masks):
    lits = naive_literals(features, masks, normalize=True)
    d = model.hidden_channels
    out = []
    for e in range(N):
        has = bool((features['numeric'][e, A:] > 0.5).any()) or bool(masks['text'][e])
        emb = [float(x) for x in model.node_emb.weight.detach()[e]]
        parts = 2 if model.base == 'complex' else 1
        fused = []
        for p in range(parts):
            fused += naive_g(model, emb[p * d:(p + 1) * d], lits[e], p, has)[1]
        out.append(fused)
    return out


def naive_score(model, fused, h, r, t):
    rel = [float(x) for x in model.rel_emb.weight.detach()[r]]
    if model.base == 'distmult':
        return sum(a * b * c for a, b, c in zip(fused[h], rel, fused[t]))
    d = model.hidden_channels
    hc = [complex(fused[h][k], fused[h][d + k]) for k in range(d)]
    rc = [complex(rel[k], rel[d + k]) for k in range(d)]
    tc = [complex(fused[t][k], fused[t][d + k]) for k in range(d)]
    return sum(a * b * c.conjugate() for a, b, c in zip(hc, rc, tc)).real


def triples(n=8, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=gen), torch.randint(0, R, (n, ), generator=gen),
            torch.randint(0, N, (n, ), generator=gen))


def test_the_literal_vector_is_the_normalised_attributes_then_the_text():
    model, features, masks = make()
    want = torch.tensor(naive_literals(features, masks), dtype=torch.float64)
    assert model.representation.literal_channels == A + 5
    torch.testing.assert_close(model.representation.literals, want)
    # numeric columns in [0, 1], 0 where missing; the presence read from the columns
    present = features['numeric'][:, A:] > 0.5
    assert torch.equal(model.representation.present[:, :A], present)
    assert [t.presence for t in model.representation.tables] == ['columns', 'entity']


def test_presence_modes_and_normalisation():
    features, masks = tables()
    x = features['numeric']
    assert presence_layout(x) and not presence_layout(features['text'])
    # 'zeros': the value columns alone, a 0 read as missing (the original's convention)
    v, p, t = prepare_literals('M', {'n': x[:, :A]}, {'n': masks['numeric']}, 'zeros', 'none')
    assert torch.equal(p, x[:, :A] != 0) and t[0].presence == 'zeros'
    # 'entity': every column present where the entity has the modality, never normalised
    v, p, _ = prepare_literals('M', {'t': features['text']}, {'t': masks['text']}, 'entity',
                               'minmax')
    assert torch.equal(p, masks['text'][:, None].expand(N, 5))
    torch.testing.assert_close(v, features['text'].double() * masks['text'][:, None])
    # 'none' keeps the values
    v, _, _ = prepare_literals('M', {'n': x}, {'n': masks['numeric']}, 'auto', 'none')
    torch.testing.assert_close(v, x[:, :A].double())
    with pytest.raises(ValueError, match=r"^M: literal_presence='columns' reads a \[values \| "
                       r"presence\] table, but the features of 't'"):
        prepare_literals('M', {'t': features['text']}, {'t': masks['text']}, 'columns')


@pytest.mark.parametrize('kwargs', [{}, dict(base='complex'), dict(gate=False),
                                    dict(mask_missing=False),
                                    dict(base='complex', gate=False, mask_missing=False)])
def test_fused_embedding_is_eq_4(kwargs):
    model, features, masks = make(**kwargs)
    want = torch.tensor(naive_fused(model, features, masks), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.fused(), want)
        torch.testing.assert_close(model.fused(torch.tensor([3, 0, 3])), want[[3, 0, 3]])


def test_gate_is_eq_4():
    model, features, masks = make()
    lits = naive_literals(features, masks)
    with torch.no_grad():
        stack, _ = model.representation()
        z = model.fusion.gate(stack)
    for e in range(N):
        emb = [float(x) for x in model.node_emb.weight.detach()[e]]
        want, _ = naive_g(model, emb, lits[e])
        torch.testing.assert_close(z[e], torch.tensor(want, dtype=torch.float64))


def test_entities_without_literals():
    # masked (the default): e_hat = e; the original: gated with l = 0
    model, _, _ = make()
    assert model.representation.has_literal.tolist() == [e != 9 for e in range(N)]
    L = model.representation.literal_channels
    with torch.no_grad():
        e9 = model.node_emb.weight[9]
        torch.testing.assert_close(model.fused(torch.tensor([9]))[0], e9)
        unmasked, _, _ = make(mask_missing=False)
        e9 = [float(x) for x in unmasked.node_emb.weight[9]]
        want = torch.tensor(naive_g(unmasked, e9, [0.0] * L)[1], dtype=torch.float64)
        torch.testing.assert_close(unmasked.fused(torch.tensor([9]))[0], want)
        assert not torch.allclose(want, unmasked.node_emb.weight[9])


@pytest.mark.parametrize('kwargs', [{}, dict(base='complex'), dict(gate=False),
                                    dict(base='complex', mask_missing=False)])
def test_scores_are_the_base_of_the_fused_embeddings(kwargs):
    model, features, masks = make(**kwargs)
    fused = naive_fused(model, features, masks)
    h, r, t = triples()
    want = torch.tensor([naive_score(model, fused, int(a), int(b), int(c))
                         for a, b, c in zip(h, r, t)], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(h, r, t), want)
        tails = model.score_tails(h, r)
        heads = model.score_heads(r, t)
    every = [[naive_score(model, fused, int(h[b]), int(r[b]), e) for e in range(N)]
             for b in range(h.numel())]
    torch.testing.assert_close(tails, torch.tensor(every, dtype=torch.float64))
    every = [[naive_score(model, fused, e, int(r[b]), int(t[b])) for e in range(N)]
             for b in range(h.numel())]
    torch.testing.assert_close(heads, torch.tensor(every, dtype=torch.float64))


def test_one_vs_all_uses_one_prepared_table():
    model, _, _ = make()
    h, r, _ = triples()
    calls = []
    fusion_forward = model.fusion.forward
    model.fusion.forward = lambda *a, **k: calls.append(a[0].shape) or fusion_forward(*a, **k)
    with torch.no_grad():
        cache = model.prepare_scoring()
        assert calls == [(N, 3, D)]
        model.score_tails(h, r, cache)
        model.score_heads(r, h, cache)
    assert len(calls) == 1  # the queries are rows of the table, not fused again


def test_input_dropout_hits_the_query_and_the_relation():
    model, _, _ = make(input_dropout=0.5)
    model.train()
    h, r, _ = triples()
    with torch.no_grad():
        table = model.fused()
        torch.manual_seed(3)
        got = model.score_tails(h, r)
        torch.manual_seed(3)
        q = torch.nn.functional.dropout(table[h], 0.5, True)
        rel = torch.nn.functional.dropout(model.rel_emb.weight[r], 0.5, True)
        torch.testing.assert_close(got, (q * rel) @ table.t())
        torch.manual_seed(4)
        got = model.score_heads(r, h)
        torch.manual_seed(4)
        q = torch.nn.functional.dropout(table[h], 0.5, True)
        rel = torch.nn.functional.dropout(model.rel_emb.weight[r], 0.5, True)
        torch.testing.assert_close(got, (q * rel) @ table.t())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.score_tails(h, r),
                                   (table[h] * model.rel_emb.weight[r]) @ table.t())


def test_defaults_are_the_authors():
    model, _, _ = make()
    assert model.one_to_n and model.default_regime == '1-n'
    assert model.base == 'distmult' and model.gate and not model.inverse_relations
    assert isinstance(model.loss_fn, BCELoss) and model.loss_fn.label_smoothing == 0.0
    assert model.interaction.dropout.p == 0.2
    assert model.regularization is None
    assert model.rel_emb.weight.shape == (R, D)
    c, _, _ = make(base='complex', inverse_relations=True)
    assert c.rel_emb.weight.shape == (2 * R, 2 * D) and c.node_emb.weight.shape == (N, 2 * D)


def test_one_to_n_loss_is_bce_of_the_scores():
    model, _, _ = make(input_dropout=0.0)
    model.train()
    h, r, t = triples()
    target = torch.zeros(h.numel(), N, dtype=torch.float64)
    target[torch.arange(h.numel()), t] = 1.0
    loss = model.loss_1n(h, r, target)
    with torch.no_grad():
        want = torch.nn.functional.binary_cross_entropy_with_logits(model.score_tails(h, r),
                                                                    target)
    torch.testing.assert_close(loss.detach(), want)


def test_bad_arguments():
    features, masks = tables()
    with pytest.raises(ValueError, match=r'^LiteralE: base must be one of .*got \'transe\''):
        LiteralE(N, R, D, features, masks, base='transe')
    with pytest.raises(ValueError, match='needs at least one literal table'):
        LiteralE(N, R, D, {})
    with pytest.raises(ValueError, match=r"^LiteralE: literal_presence='columns'"):
        LiteralE(N, R, D, features, masks, literal_presence='columns')
    with pytest.raises(ValueError, match=r'^LiteralE: input_dropout must be'):
        LiteralE(N, R, D, features, masks, input_dropout=1.0)


def test_from_data_and_training():
    # 1-N training on a small graph: the filtered training MRR rises well above chance
    from torch_mmkg.data import KnownTriples, get_triples
    data = FakeMMKGDataset(num_entities=N, num_relations=R, num_triples=40,
                           modalities={'numeric': 4, 'text': 3}, seed=0)[0]
    torch.manual_seed(0)
    model = LiteralE.from_data(data, 8, modalities=['numeric'])
    assert model.modalities == ['numeric']
    h, r, t = get_triples(data, 'train')
    known = KnownTriples(h, r, t, N, R)
    before = model.test(h, r, t, known=known, log=False)[1]
    loader = model.loader_1n(h, r, t, batch_size=16, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        for batch in loader:
            opt.zero_grad()
            model.loss_1n(*batch).backward()
            opt.step()
    after = model.test(h, r, t, known=known, log=False)[1]
    assert after > 0.6 and after > before + 0.3, (before, after)
