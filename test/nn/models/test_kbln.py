r"""KBLN (García-Durán & Niepert, UAI 2018, as in the LiteralE repository) against naive
transcriptions: the RBF parameters by their definition on the training triples, the score as
a loop over attributes, one-vs-all scoring in blocks as the per-triple score."""
import math

import numpy as np
import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.nn import BCELoss, KBLN
from torch_mmkg.nn.models import kbln as kbln_module
from torch_mmkg.nn.models.kbln import rbf_scores, rbf_statistics

N, R, D, A = 12, 3, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def literals():
    r"""A numeric [values | presence] table: entities 0 and 6 without any attribute, others
    missing some; attribute 3 is present on two entities only."""
    gen = torch.Generator().manual_seed(21)
    present = torch.rand(N, A, generator=gen) > 0.3
    present[[0, 6]] = False
    present[:, 3] = False
    present[[2, 4], 3] = True
    values = (torch.randn(N, A, generator=gen) * 2 + 0.5) * present
    return values, present


def train_edges(E=25, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, N, (2, E), generator=gen)


def make(**kwargs):
    values, present = literals()
    features = {'numeric': torch.cat([values, present.float()], dim=1)}
    masks = {'numeric': present.any(1)}
    kwargs.setdefault('train_edge_index', train_edges())
    torch.manual_seed(0)
    model = KBLN(N, R, D, features, masks, **kwargs).double().eval()
    return model, values.double(), present


def naive_statistics(values, present, edges, masked):
    r"""Per attribute: the mean and the population variance (+ 1e-6) of n_h - n_t over the
    training triples (where both have the attribute, if masked)."""
    c, var = [], []
    for i in range(A):
        diffs = [float(values[h, i] - values[t, i]) for h, t in edges.t().tolist()
                 if not masked or (present[h, i] and present[t, i])]
        if not diffs:
            c.append(0.0)
            var.append(1.0)
            continue
        mean = sum(diffs) / len(diffs)
        c.append(mean)
        var.append(sum((x - mean) ** 2 for x in diffs) / len(diffs) + 1e-6)
    return torch.tensor(c, dtype=torch.float64), torch.tensor(var, dtype=torch.float64)


def naive_score(model, values, present, h, r, t):
    r"""DistMult(h, r, t) + sum_i w_ri exp(-((n_hi - n_ti) - c_i)^2 / sigma_i^2), a loop over
    attributes (only attributes both entities have, if masked)."""
    d = D
    e = model.node_emb.weight.detach()
    rel = model.rel_emb.weight.detach()
    c, var = model.rbf.centers, model.rbf.variances
    score = sum(float(e[h, k] * rel[r, k] * e[t, k]) for k in range(d))
    for i in range(A):
        if model.mask_missing and not (present[h, i] and present[t, i]):
            continue
        x = float(values[h, i] - values[t, i])
        score += float(rel[r, d + i]) * math.exp(-(x - float(c[i])) ** 2 / float(var[i]))
    return score


def triples(n=7, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=gen), torch.randint(0, R, (n, ), generator=gen),
            torch.randint(0, N, (n, ), generator=gen))


@pytest.mark.parametrize('masked', [True, False])
def test_rbf_parameters_are_their_definition(masked):
    model, values, present = make(mask_missing=masked)
    c, var = naive_statistics(values, present, train_edges(), masked)
    torch.testing.assert_close(model.rbf.centers, c)
    torch.testing.assert_close(model.rbf.variances, var)
    if not masked:  # the original's np.mean / np.var of the zero-filled differences
        h, t = train_edges().numpy()
        n = values.numpy()
        np.testing.assert_allclose(model.rbf.centers.numpy(), np.mean(n[h] - n[t], axis=0))
        np.testing.assert_allclose(model.rbf.variances.numpy(),
                                   np.var(n[h] - n[t], axis=0) + 1e-6)
    else:  # attribute 3: one pair at most has it on both sides here
        assert bool(present[:, 3].sum() == 2)


def test_rbf_statistics_in_chunks():
    values, present = literals()
    h, t = train_edges(E=40)
    for p in (None, present):
        whole = rbf_statistics(values, p, h, t)
        chunked = rbf_statistics(values, p, h, t, chunk=3)
        torch.testing.assert_close(whole, chunked)
    c, var = rbf_statistics(values, present, h[:0], t[:0])  # no triple: c = 0, sigma^2 = 1
    assert torch.equal(c, torch.zeros(A, dtype=torch.float64))
    assert torch.equal(var, torch.ones(A, dtype=torch.float64))


@pytest.mark.parametrize('masked', [True, False])
def test_score_is_a_loop_over_attributes(masked):
    model, values, present = make(mask_missing=masked)
    h, r, t = triples()
    want = [naive_score(model, values, present, int(a), int(b), int(c))
            for a, b, c in zip(h, r, t)]
    with torch.no_grad():
        torch.testing.assert_close(model(h, r, t), torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize('block', [None, 1, 5])
@pytest.mark.parametrize('masked', [True, False])
def test_one_vs_all_is_the_per_triple_score(masked, block):
    model, values, present = make(mask_missing=masked)
    model.rbf.max_block_elements = None if block is None else block * 7 * A
    h, r, t = triples()
    with torch.no_grad():
        tails, heads = model.score_tails(h, r), model.score_heads(r, t)
    want_t = [[naive_score(model, values, present, int(h[b]), int(r[b]), e) for e in range(N)]
              for b in range(h.numel())]
    want_h = [[naive_score(model, values, present, e, int(r[b]), int(t[b])) for e in range(N)]
              for b in range(h.numel())]
    torch.testing.assert_close(tails, torch.tensor(want_t, dtype=torch.float64))
    torch.testing.assert_close(heads, torch.tensor(want_h, dtype=torch.float64))


def test_rbf_blocks_and_their_gradient():
    gen = torch.Generator().manual_seed(0)
    B, M = 3, 7
    w = torch.randn(B, A, generator=gen, dtype=torch.float64, requires_grad=True)
    a, n = torch.randn(B, A, generator=gen, dtype=torch.float64), torch.randn(
        M, A, generator=gen, dtype=torch.float64)
    var = torch.rand(A, generator=gen, dtype=torch.float64) + 0.5
    pa = (torch.rand(B, A, generator=gen) > 0.3).double()
    pn = (torch.rand(M, A, generator=gen) > 0.3).double()
    dense = (w[:, None, :] * torch.exp(-(a[:, None, :] - n[None]) ** 2 / var)
             * pa[:, None, :] * pn[None]).sum(-1)
    blocked = rbf_scores(w, a, n, var, pa, pn, max_elements=2 * B * A)  # blocks of 2
    torch.testing.assert_close(blocked, dense)
    g = torch.randn(B, M, generator=gen, dtype=torch.float64)
    want, = torch.autograd.grad(dense, w, g)
    got, = torch.autograd.grad(blocked, w, g)
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(
        lambda w_: rbf_scores(w_, a, n, var, pa, pn, max_elements=3 * B * A), (w, ))


def test_no_block_is_larger_than_the_score_matrix(monkeypatch):
    sizes = []
    block = kbln_module._rbf_block
    monkeypatch.setattr(kbln_module, '_rbf_block',
                        lambda *args: sizes.append(block(*args).numel()) or block(*args))
    B, M, F = 64, 5000, 50
    w = torch.randn(B, F, requires_grad=True)
    out = rbf_scores(w, torch.randn(B, F), torch.randn(M, F), torch.ones(F))
    out.sum().backward()
    assert out.shape == (B, M) and sizes and max(sizes) <= B * M
    assert len(sizes) == 2 * math.ceil(M / (M // F))  # forward and recomputed backward
    # DB15K's 1-N step: 128 queries, 12,842 entities, 225 attributes: 57 entities a block
    assert kbln_module._block_size(128, 12842, 225, None) == 57


def test_input_dropout_hits_only_the_structural_query():
    model, values, present = make(input_dropout=0.5)
    model.train()
    h, r, _ = triples()
    rbf = model.rbf
    with torch.no_grad():
        table = model.entity()
        rel = model.relation(r)
        torch.manual_seed(1)
        got = model.score_tails(h, r)
        torch.manual_seed(1)
        q = table[h].clone()
        q[:, :D] = torch.nn.functional.dropout(q[:, :D], 0.5, True)
        rr = rel.clone()
        rr[:, :D] = torch.nn.functional.dropout(rr[:, :D], 0.5, True)
        torch.testing.assert_close(got, rbf.score_tails(q, rr, table))
        assert not torch.allclose(got, rbf.score_tails(table[h], rel, table))


def test_defaults_are_the_authors():
    model, _, _ = make()
    assert model.one_to_n and not model.inverse_relations
    assert isinstance(model.loss_fn, BCELoss) and model.loss_fn.label_smoothing == 0.1
    assert model.interaction.dropout.p == 0.2 and model.regularization is None
    assert model.rel_emb.weight.shape == (R, D + A)
    assert model.node_emb.weight.shape == (N, D)
    # w_r ~ N(0, 1), the original's nn.Embedding
    torch.manual_seed(0)
    big = KBLN(10, 60, 4, {'x': torch.randn(10, 50)})
    w = big.rel_emb.weight[:, 4:].detach()
    assert abs(float(w.std()) - 1.0) < 0.05 and abs(float(w.mean())) < 0.05


def test_fitting_the_rbf_parameters():
    values, present = literals()
    features = {'numeric': torch.cat([values, present.float()], dim=1)}
    model = KBLN(N, R, D, features)
    assert not model.rbf_fitted
    assert torch.equal(model.rbf.centers, torch.zeros(A))
    assert torch.equal(model.rbf.variances, torch.ones(A))
    edges = train_edges()
    c, var = model.fit_rbf(edges)
    want = naive_statistics(values.double(), present, edges, True)
    torch.testing.assert_close(c.double(), want[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(var.double(), want[1], atol=1e-6, rtol=1e-5)
    assert model.rbf_fitted and 'rbf.centers' not in model.state_dict()
    assert 'interaction.base.centers' in model.state_dict()
    with pytest.raises(ValueError, match=r'^KBLN: train_edge_index must be a \[2, E\]'):
        model.fit_rbf(edges[0])
    bad = edges.clone()
    bad[1, 3] = N
    with pytest.raises(ValueError, match=r'^KBLN: train_edge_index holds entity id 12'):
        model.fit_rbf(bad)


def test_from_data_fits_on_the_training_split():
    from torch_mmkg.data import KnownTriples, get_triples
    data = FakeMMKGDataset(num_entities=N, num_relations=R, num_triples=40,
                           modalities={'numeric': 4, 'text': 3}, seed=0)[0]
    torch.manual_seed(0)
    model = KBLN.from_data(data, 8, modalities=['numeric'])
    h, r, t = get_triples(data, 'train')
    rep = model.representation
    want = rbf_statistics(rep.literals[:, :rep.num_attributes], rep.present, h, t)
    torch.testing.assert_close(model.rbf.centers, want[0].float())
    torch.testing.assert_close(model.rbf.variances, want[1].float())
    # 1-N training: the filtered training MRR rises
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
