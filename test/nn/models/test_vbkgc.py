import pytest
import torch

from torch_mmkg.data import get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import Negatives, NegativeSampler
from torch_mmkg.nn import TBKGC, VBKGC, TransE, TuckER
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.training import TrainConfig, Trainer

N, R, D = 20, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def make(**kwargs):
    torch.manual_seed(0)
    feats = {'multimodal': torch.randn(N, 7)}
    masks = {'multimodal': torch.arange(N) % 4 != 0}
    return VBKGC(N, R, D, feats, masks, **kwargs).double(), feats, masks


def triples(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


def f(h, r, t):  # TransE, L1, Eq. 10
    return -(h + r - t).abs().sum(-1)


def embeddings(model, feats, masks, e):
    W = model.representation.projection.mlps['multimodal'][0].weight
    x = feats['multimodal'][e].double()
    m = (W @ x) if masks['multimodal'][e] else torch.zeros(D, dtype=torch.float64)
    return model.node_emb.weight[e], m


def naive_score(model, feats, masks, h, r, t, h_emb=None, t_emb=None):
    hs, hm = h_emb or embeddings(model, feats, masks, h)
    ts, tm = t_emb or embeddings(model, feats, masks, t)
    rr = model.rel_emb.weight[r]
    return (f(hs, rr, ts) + f(hm, rr, tm) + f(hs, rr, tm) + f(hm, rr, ts) +
            f(hs + hm, rr, ts + tm))  # Eqs. 4-9


def test_score_equals_naive_transcription():
    model, feats, masks = make()
    h, r, t = triples()
    with torch.no_grad():
        s = model(h, r, t)
        ref = torch.stack([naive_score(model, feats, masks, *map(int, x)) for x in zip(h, r, t)])
        assert torch.allclose(s, ref, atol=1e-10)
        parts = model.score_parts(h, r, t)
        assert torch.allclose(sum(parts.values()), s, atol=1e-10)
        assert torch.allclose(model.score_tails(h, r).gather(1, t[:, None]).view(-1), s)
        assert torch.allclose(model.score_heads(r, t).gather(1, h[:, None]).view(-1), s)


def test_loss_is_eq_15():
    model, feats, masks = make(margin=5.0)
    assert isinstance(model.loss_fn, MarginRankingLoss) and model.loss_fn.aggregate == 'mean'
    h, r, t = triples()
    neg = NegativeSampler(N, 6, generator=torch.Generator().manual_seed(0))(h, r, t)
    pos, ns = model.score_negatives(h, r, t, neg)
    naive = sum(max(0.0, 5.0 - float(pos[b]) + float(ns[b].mean())) for b in range(len(h)))
    assert model.loss(h, r, t, neg).item() == pytest.approx(naive / len(h), rel=1e-9)
    # TBKGC keeps its pairwise margin loss
    assert TBKGC(N, R, D, feats).loss_fn.aggregate == 'pairwise'


def test_twins_negatives_differ_only_in_the_multimodal_part():
    model, feats, masks = make()
    h, r, t = triples()
    sampler = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(3), twins=True)
    neg = sampler(h, r, t)
    assert neg.twins and repr(sampler).endswith('twins=True)')
    normal = Negatives(neg.index, neg.corrupt_head)  # the same draw, ordinary negatives
    assert not normal.twins
    with torch.no_grad():
        pos_t, twins = model.score_negatives(h, r, t, neg)
        pos_n, plain = model.score_negatives(h, r, t, normal)
        assert torch.equal(pos_t, pos_n)
        for b in range(len(h)):
            for k in range(5):
                c = int(neg.index[b, k])
                cs, cm = embeddings(model, feats, masks, c)
                ch = bool(neg.corrupt_head[b])
                hh, tt = (c, int(t[b])) if ch else (int(h[b]), c)
                # ordinary: the whole entity replaced in all five terms
                assert plain[b, k] == pytest.approx(
                    float(naive_score(model, feats, masks, hh, int(r[b]), tt)), abs=1e-9)
                # twins: unimodal terms on (e'_s, e'_m), cross-modal on (e_s, e'_m)
                own = int(h[b]) if ch else int(t[b])
                es, _ = embeddings(model, feats, masks, own)
                hs, hm = (cs, cm) if ch else embeddings(model, feats, masks, int(h[b]))
                ts, tm = embeddings(model, feats, masks, int(t[b])) if ch else (cs, cm)
                rr = model.rel_emb.weight[int(r[b])]
                uni = f(hs, rr, ts) + f(hm, rr, tm)
                hs_x, ts_x = (es, ts) if ch else (hs, es)
                cross = f(hs_x, rr, tm) + f(hm, rr, ts_x) + f(hs_x + hm, rr, ts_x + tm)
                assert twins[b, k] == pytest.approx(float(uni + cross), abs=1e-9)
        # where the corrupted entity's structure equals the replaced one's, they coincide
        model.node_emb.weight.copy_(model.node_emb.weight[:1].expand(N, -1))
        assert torch.allclose(model.score_negatives(h, r, t, neg)[1],
                              model.score_negatives(h, r, t, normal)[1])


def test_twins_through_loader_and_trainer(tmp_path):
    data = FakeMMKGDataset(num_entities=40, num_relations=2, num_triples=200,
                           modalities={'multimodal': 6}, seed=0)[0]
    model = VBKGC.from_data(data, 8)
    loader = model.loader(*get_triples(data, 'train'), num_negatives=4, batch_size=32,
                          twins=True)
    batch = next(iter(loader))
    assert batch[3].twins
    res = Trainer(model, data, TrainConfig(epochs=2, batch_size=64, num_negatives=4, twins=True,
                                           eval_every=1, progress=False),
                  out_dir=str(tmp_path)).fit()
    assert res['config']['twins'] is True and res['epochs_trained'] == 2
    # a model without separate structural and multi-modal embeddings refuses twins
    with pytest.raises(ValueError, match='twins'):
        TransE(40, 2, 8).loader(*get_triples(data, 'train'), num_negatives=4, twins=True)
    train = get_triples(data, 'train')
    with pytest.raises(ValueError, match='one entity representation'):
        TransE(40, 2, 8).loss(*train, NegativeSampler(40, 2, twins=True)(*train))
    with pytest.raises(ValueError, match='num_negatives'):
        model.loader(*get_triples(data, 'train'), twins=True)
    with pytest.raises(ValueError, match='twins negative sampling needs negative-sampling'):
        Trainer(TuckER(40, 2, 8), data, TrainConfig(twins=True, progress=False),
                out_dir=str(tmp_path / 'tucker'))


@pytest.mark.parametrize('twins', [False, True])
def test_learns_planted_permutation(twins):
    n, K = 30, 8
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(n, generator=g) for _ in range(2)]
    h = torch.arange(n).repeat(2)
    r = torch.arange(2).repeat_interleave(n)
    t = torch.cat([perms[0][h[:n]], perms[1][h[n:]]])  # t = pi_r(h)
    torch.manual_seed(0)
    model = VBKGC(n, 2, 16, {'multimodal': torch.eye(n)}, margin=4.0)
    before = model.test(h, r, t, log=False)[1]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sampler = NegativeSampler(n, K, generator=torch.Generator().manual_seed(1), twins=twins)
    for _ in range(300):
        opt.zero_grad()
        model.loss(h, r, t, sampler(h, r, t)).backward()
        opt.step()
    after = model.test(h, r, t, log=False)[1]
    # Eq. 15 compares the positive with the *mean* negative: once that is beyond the margin
    # the loss is 0 and learning stops (here at MRR ~0.5; the pairwise loss reaches 0.9)
    assert before < 0.2 and after > 0.4, (before, after)
