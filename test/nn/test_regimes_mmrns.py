r"""MMRNS (torch_mmkg.nn.sampling.mmrns) against naive transcriptions: the knowledge-guided
cross-modal attention, the sampler's distribution and its masking of true answers, the
hard Gumbel-softmax draws without replacement and their straight-through gradient, the
temperature schedule, the contrastive terms and their weights."""
import math

import pytest
import torch
import torch.nn.functional as F

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import MMRNS, REGIMES, TransE
from torch_mmkg.nn.sampling.mmrns import LOG_TINY, KnowledgeGuidedCrossModalAttention, \
    gumbel_top_k

N, R, D = 15, 2, 4
DT = torch.float64


pytestmark = pytest.mark.usefixtures('single_thread')  # test/conftest.py


def _features():
    gen = torch.Generator().manual_seed(2)
    xv, xt = torch.randn(N, 3, 4, generator=gen), torch.randn(N, 2, 3, generator=gen)
    mv = torch.rand(N, 3, generator=gen) > 0.3
    mt = torch.rand(N, 2, generator=gen) > 0.3
    mt[0] = False  # an entity without text
    return {'image': xv, 'text': xt}, {'image': mv, 'text': mt}


def _kca(**kwargs):
    torch.manual_seed(0)
    (f, m) = _features()
    kca = KnowledgeGuidedCrossModalAttention(f['image'], f['text'], D, 5, m['image'], m['text'],
                                             attention_channels=6, gate_channels=7,
                                             **kwargs).to(DT)
    with torch.no_grad():  # non-trivial LayerNorm and biases
        for p in kca.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return kca


def _lin(layer, x):
    return layer.weight @ x + layer.bias


def _ln(norm, x):
    mu = sum(x) / len(x)
    var = sum((v - mu) ** 2 for v in x) / len(x)
    return (x - mu) / math.sqrt(var + norm.eps) * norm.weight + norm.bias


def _softmax(xs):
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    return [v / sum(e) for v in e]


def _naive_views(kca, e, r, es, positive=False):
    r"""The KCA's three views of entity e under relation vector r, one instance at a time."""
    Kv, Kt = kca.num_visual, kca.num_textual
    mv, mt = kca.mask_visual[e], kca.mask_textual[e]
    if not kca.mask_missing:
        mv, mt = torch.ones_like(mv), torch.ones_like(mt)
    V = [F.leaky_relu(_lin(kca.lin_visual, kca.x_visual[e, i].to(DT)), 0.1) if mv[i] else
         torch.zeros(6, dtype=DT) for i in range(Kv)]
    T = [F.leaky_relu(_lin(kca.lin_textual, kca.x_textual[e, j].to(DT)), 0.1) if mt[j] else
         torch.zeros(6, dtype=DT) for j in range(Kt)]
    C = [[float(V[i] @ T[j]) for j in range(Kt)] for i in range(Kv)]
    gv = torch.sigmoid(_lin(kca.gate_visual, r)).view(Kv, Kt)
    gt = torch.sigmoid(_lin(kca.gate_textual, r)).view(Kv, Kt)
    v_hat = []
    for j in range(Kt):
        present = [i for i in range(Kv) if mv[i]]
        w = _softmax([C[i][j] for i in present]) if present else []
        att = sum((wi * V[i] for wi, i in zip(w, present)), torch.zeros(6, dtype=DT))
        rel = sum((gv[i, j] * C[i][j] * V[i] for i in range(Kv)), torch.zeros(6, dtype=DT))
        soft = _ln(kca.norm, att) if (kca.positive_layernorm or not positive) else att
        v_hat.append(_ln(kca.norm, rel) + soft)
    t_hat = []
    for i in range(Kv):
        present = [j for j in range(Kt) if mt[j]]
        w = _softmax([C[i][j] for j in present]) if present else []
        att = sum((wj * T[j] for wj, j in zip(w, present)), torch.zeros(6, dtype=DT))
        rel = sum((gt[i, j] * C[i][j] * T[j] for j in range(Kt)), torch.zeros(6, dtype=DT))
        t_hat.append(_ln(kca.norm, rel) + _ln(kca.norm, att))
    v_e = _lin(kca.proj_visual, torch.cat(v_hat))
    t_e = _lin(kca.proj_textual, torch.cat(t_hat))
    hidden = F.leaky_relu(_lin(kca.struct1, torch.cat([es, r])), 0.1)
    return v_e, t_e, es * torch.sigmoid(_lin(kca.struct2, hidden))


@pytest.mark.parametrize('kwargs', [{}, {'positive_layernorm': False}, {'mask_missing': False}])
def test_kca_is_the_naive_transcription(kwargs):
    kca = _kca(**kwargs)
    gen = torch.Generator().manual_seed(1)
    index = torch.tensor([0, 3, 7, 11])
    r = torch.randn(2, 5, generator=gen, dtype=DT)
    es = torch.randn(4, D, generator=gen, dtype=DT)
    pairwise = kca(index, r, es, pairwise=True)
    for b in range(2):
        for p in range(4):
            want = _naive_views(kca, int(index[p]), r[b], es[p])
            for got, w in zip(pairwise, want):
                assert torch.allclose(got[b, p], w, atol=1e-10)
    own = kca(index[:2], r, es[:2], pairwise=False, positive=True)
    for b in range(2):
        want = _naive_views(kca, int(index[b]), r[b], es[b], positive=True)
        for got, w in zip(own, want):
            assert torch.allclose(got[b], w, atol=1e-10)


def test_single_vectors_are_one_instance():
    x, y = torch.randn(N, 4), torch.randn(N, 3)
    torch.manual_seed(0)
    a = KnowledgeGuidedCrossModalAttention(x, y, D, 5)
    torch.manual_seed(0)
    b = KnowledgeGuidedCrossModalAttention(x[:, None], y[:, None], D, 5)
    idx, r, es = torch.arange(5), torch.randn(2, 5), torch.randn(5, D)
    for u, v in zip(a(idx, r, es), b(idx, r, es)):
        assert torch.equal(u, v)


def test_gumbel_draws_without_replacement_straight_through():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, generator=gen, dtype=DT, requires_grad=True)
    hots, idx = gumbel_top_k(logits, 6, torch.Generator().manual_seed(4))
    assert all(sorted(row.tolist()) == list(range(6)) for row in idx)  # every one, once
    assert torch.equal(hots.detach(), F.one_hot(idx, 6).to(DT))  # exactly one-hot forward
    c = torch.randn(3, 6, 6, generator=gen, dtype=DT)
    (hots * c).sum().backward()
    # naive: the same noise, the softmax of the perturbed (and penalised) logits per draw
    replay = torch.Generator().manual_seed(4)
    l2 = logits.detach().clone().requires_grad_(True)
    current, total = l2, 0.0
    for k in range(6):
        u = torch.rand(3, 6, generator=replay, dtype=DT)
        y = torch.softmax(current - torch.log(-torch.log(u)), dim=-1)
        assert torch.equal(y.argmax(-1), idx[:, k])
        total = total + (y * c[:, k]).sum()
        current = current + F.one_hot(idx[:, k], 6).to(DT) * LOG_TINY
    total.backward()
    assert torch.allclose(logits.grad, l2.grad, atol=1e-12)


def test_temperature_schedule_and_steps():
    regime = MMRNS(temperature=10.0)
    assert [regime.tau(s) for s in (0, 1, 9)] == pytest.approx(
        [10.0, 10 / (1 + math.log(2)), 10 / (1 + math.log(10))])
    model, batch = _model(), _batch()
    regime = _regime()
    regime.loader(model, *_triples(), batch_size=4)
    with torch.no_grad():
        regime.loss(model, batch)
    assert int(regime.step) == 0
    taus = [regime.loss(model, batch).context['tau'] for _ in range(3)]
    assert taus == pytest.approx([regime.tau(s) for s in range(3)]) and int(regime.step) == 3


def test_sampling_logits_and_contrastive_terms_are_the_naive_ones():
    gen = torch.Generator().manual_seed(0)
    B, P = 3, 5
    sims = [torch.rand(B, P, generator=gen, dtype=DT) * 2 - 1 for _ in range(3)]
    answers = torch.rand(B, P, generator=gen) > 0.6
    answers[2] = True  # a row of answers only: nothing masked
    tau = 0.7
    logits = MMRNS.sampling_logits(sims, answers, tau)
    for b in range(B):
        q = [sum(_softmax([float(s[b, p]) / tau for p in range(P)])[j] for s in sims)
             for j in range(P)]
        for p in range(P):
            want = -math.inf if (answers[b, p] and b != 2) else math.log(q[p])
            assert float(logits[b, p]) == pytest.approx(want)
    idx = torch.tensor([[0, 3], [4, 4], [1, 2]])  # a repeat: weighted twice
    a = torch.tensor([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], dtype=DT)
    w = MMRNS.presample_weights(idx, a, P)
    naive = [[1 / P] * P for _ in range(B)]
    for b in range(B):
        for n in range(2):
            naive[b][int(idx[b, n])] *= float(a[b, n])
    assert torch.allclose(w, torch.tensor(naive, dtype=DT))
    regime = MMRNS(loss_rate=100.0)
    got = regime.contrastive(sims, answers, w)
    want = 0.0
    for s in sims:
        num = sum(math.exp(s[b, p]) * naive[b][p] for b in range(B) for p in range(P)
                  if answers[b, p])
        den = sum(math.exp(s[b, p]) * naive[b][p] for b in range(B) for p in range(P)
                  if not answers[b, p])
        want -= math.log(num / den)
    assert float(got) == pytest.approx(want / 300)
    assert float(regime.contrastive(sims, torch.zeros_like(answers), w)) == 0.0


def test_cosines_detach_the_norms():
    x = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    a = torch.randn(2, 4, dtype=DT)
    for detach in (True, False):
        regime = MMRNS(detach_norm=detach)
        (s, ) = regime.cosines([x], [a])
        assert torch.allclose(s, F.cosine_similarity(x, a[:, None], dim=-1), atol=1e-9)
        g, = torch.autograd.grad(s.sum(), x)
        norms = x.norm(dim=-1, keepdim=True) * a.norm(dim=-1)[:, None, None]
        want = a[:, None].expand_as(x) / norms
        assert torch.allclose(g, want, atol=1e-9) == detach


def _model():
    torch.manual_seed(0)
    return TransE(N, R, D, margin=2.0).to(DT)


def _triples():
    gen = torch.Generator().manual_seed(0)
    h = torch.randint(0, N, (30, ), generator=gen)
    r = torch.randint(0, R, (30, ), generator=gen)
    t = torch.randint(0, N, (30, ), generator=gen)
    t[:10] = (h[:10] + 1) % N  # queries with several answers
    h[10:20], r[10:20] = h[0], r[0]
    return h, r, t


def _batch():
    h, r, t = _triples()
    sel = torch.tensor([0, 1, 2, 12])
    return (h[sel], r[sel], t[sel], NegativeSampler(N, 1, generator=torch.Generator()
                                                    .manual_seed(0))(h[sel], r[sel], t[sel]))


def _regime(**kwargs):
    f, m = _features()
    return MMRNS(num_negatives=4, pre_sample=10, features=f, masks=m, **kwargs)


def test_true_answers_are_never_drawn():
    model, regime = _model(), _regime()
    h, r, t = _triples()
    regime.loader(model, h, r, t, batch_size=4)
    known = set(zip(h.tolist(), r.tolist(), t.tolist()))
    hb, rb, tb, neg = _batch()
    hit = 0
    for seed in range(15):
        regime._rng = torch.Generator().manual_seed(seed)
        out = regime.loss(model, (hb, rb, tb, neg))
        drawn = out.context['negatives']
        pre = set(out.context['pre_sample'].tolist())
        for b in range(4):
            ch = bool(neg.corrupt_head[b])
            row = drawn.index[b].tolist()
            assert len(set(row)) == 4 and set(row) <= pre
            for e in row:
                triple = (e, int(rb[b]), int(tb[b])) if ch else (int(hb[b]), int(rb[b]), e)
                assert triple not in known
            answers = {x for x in pre if ((x, int(rb[b]), int(tb[b])) if ch else
                                          (int(hb[b]), int(rb[b]), x)) in known}
            hit += len(answers)
    assert hit > 15  # the pre-samples held true answers to avoid


def test_gradient_reaches_the_sampler_through_the_negatives():
    model, regime = _model(), _regime(loss_rate=1e12)  # contrastive terms ~ 0
    regime.loader(model, *_triples(), batch_size=4)
    regime._rng = torch.Generator().manual_seed(0)
    out = regime.loss(model, _batch())
    out.loss.backward()
    grads = {n: p.grad for n, p in regime.kca.named_parameters()}
    assert grads['lin_visual.weight'].abs().sum() > 0  # via q and the straight-through
    assert grads['struct1.weight'].abs().sum() > 0
    assert model.rel_emb.weight.grad.abs().sum() > 0
    groups = regime.param_groups()
    assert len(groups) == 1 and 'lr' not in groups[0]
    assert _regime(kca_lr=1e-4).bind(_model()).param_groups()[0]['lr'] == 1e-4


def test_own_relation_table():
    model, regime = _model(), _regime(relation_source='own')
    regime.loader(model, *_triples(), batch_size=4)
    out = regime.loss(model, _batch())
    out.loss.backward()
    assert regime.kca.rel_emb.weight.grad.abs().sum() > 0
    assert model.rel_emb.weight.grad is not None


def test_features_from_the_graph_in_the_trainer():
    from torch_mmkg.datasets import FakeMMKGDataset
    from torch_mmkg.training import TrainConfig, Trainer
    data = FakeMMKGDataset(num_entities=20, num_relations=2, num_clusters=3, num_triples=90,
                           modalities={'image': 5, 'text': 4}, seed=0)[0]
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, batch_size=32, num_negatives=3, eval_every=1, progress=False,
                      regime='mmrns', regime_args={'pre_sample': 8, 'kca_lr': 1e-3})
    trainer = Trainer(TransE(20, 2, 4), data, cfg)
    assert trainer.regime.kca.x_visual.shape == (20, 1, 5)
    assert [g['lr'] for g in trainer.optimizer.param_groups] == [1e-3, 1e-3]
    res = trainer.fit()
    assert math.isfinite(res['history'][0]['loss'])
    assert int(trainer.regime.step) == len(trainer.loader)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match='side'):
        MMRNS(side_per='negative')
    with pytest.raises(ValueError, match='twins'):
        MMRNS(twins=True)
    with pytest.raises(ValueError, match='pre_sample'):
        MMRNS(pre_sample=0)
    with pytest.raises(ValueError, match='temperature'):
        MMRNS(temperature=0.0)
    with pytest.raises(ValueError, match='relation_source'):
        MMRNS(relation_source='both')
    with pytest.raises(ValueError, match="lack the modalities \\['text'\\]"):
        MMRNS(features={'image': torch.zeros(N, 3)})
    with pytest.raises(ValueError, match="'image' and 'text' features"):
        MMRNS().bind(_model())
    assert REGIMES['MMRNS'] is MMRNS


@pytest.mark.parametrize('inverse', [False, True])
def test_straight_through_negatives_score_as_the_drawn_entities(inverse):
    # with inverse relations a head corruption is scored as (t, r + R, e), as score_batch does
    torch.manual_seed(0)
    model = TransE(N, R, D, margin=2.0, inverse_relations=inverse).to(DT)
    regime = _regime()
    regime.loader(model, *_triples(), batch_size=4)
    regime._rng = torch.Generator().manual_seed(3)
    h, r, t, neg = _batch()
    assert neg.corrupt_head.any() and not neg.corrupt_head.all()
    with torch.no_grad():
        out = regime.loss(model, (h, r, t, neg))
        pos, hard = model.score_negatives(h, r, t, out.context['negatives'])
        want = regime.loss_for(model)(pos, hard) + out.terms['contrastive']
    assert float(out.loss) == pytest.approx(float(want), abs=1e-10)
