import pytest
import torch

from torch_mmkg.data import KnownTriples, get_triples
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


def unit(x):  # OpenKE's F.normalize(x, 2, -1), written out
    return x / x.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


def f(h, r, t, normalize=False):  # TransE, L1, Eq. 10 (on unit vectors, as the authors' code)
    if normalize:
        h, r, t = unit(h), unit(r), unit(t)
    return -(h + r - t).abs().sum(-1)


def embeddings(model, feats, masks, e):
    W = model.representation.projection.mlps['multimodal'][0].weight
    x = feats['multimodal'][e].double()
    m = (W @ x) if masks['multimodal'][e] else torch.zeros(D, dtype=torch.float64)
    return model.node_emb.weight[e], m


def naive_score(model, feats, masks, h, r, t, h_emb=None, t_emb=None, normalize=False):
    hs, hm = h_emb or embeddings(model, feats, masks, h)
    ts, tm = t_emb or embeddings(model, feats, masks, t)
    rr = model.rel_emb.weight[r]
    n = normalize
    return (f(hs, rr, ts, n) + f(hm, rr, tm, n) + f(hs, rr, tm, n) + f(hm, rr, ts, n) +
            f(hs + hm, rr, ts + tm, n))  # Eqs. 4-9


@pytest.mark.parametrize('normalize', [None, True, False])
def test_score_equals_naive_transcription(normalize):
    # None: the default, the authors' normalised TransE terms
    model, feats, masks = make() if normalize is None else make(normalize=normalize)
    normalize = normalize is not False
    h, r, t = triples()
    with torch.no_grad():
        s = model(h, r, t)
        ref = torch.stack([naive_score(model, feats, masks, *map(int, x), normalize=normalize)
                           for x in zip(h, r, t)])
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


@pytest.mark.parametrize('normalize', [False, True])
def test_twins_negatives_differ_only_in_the_multimodal_part(normalize):
    model, feats, masks = make(normalize=normalize)
    n = normalize
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
                    float(naive_score(model, feats, masks, hh, int(r[b]), tt, normalize=n)),
                    abs=1e-9)
                # twins: unimodal terms on (e'_s, e'_m), cross-modal on (e_s, e'_m)
                own = int(h[b]) if ch else int(t[b])
                es, _ = embeddings(model, feats, masks, own)
                hs, hm = (cs, cm) if ch else embeddings(model, feats, masks, int(h[b]))
                ts, tm = embeddings(model, feats, masks, int(t[b])) if ch else (cs, cm)
                rr = model.rel_emb.weight[int(r[b])]
                uni = f(hs, rr, ts, n) + f(hm, rr, tm, n)
                hs_x, ts_x = (es, ts) if ch else (hs, es)
                cross = (f(hs_x, rr, tm, n) + f(hm, rr, ts_x, n) +
                         f(hs_x + hm, rr, ts_x + tm, n))
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


@pytest.mark.parametrize('side_per', ['positive', 'negative'])
def test_trainer_filters_twins_negatives_by_default(side_per):
    # Eq. 14 filters the negatives: the Trainer does so for VBKGC unless told otherwise, for
    # twins negatives too, with the side drawn per positive or per negative; a dense graph
    # makes unfiltered draws hit training triples often.
    data = FakeMMKGDataset(num_entities=12, num_relations=2, num_clusters=1, num_triples=150,
                           modalities={'multimodal': 6}, seed=1)[0]
    train = get_triples(data, 'train')
    known = KnownTriples(*train, 12, 2)

    def known_negatives(cfg):
        trainer = Trainer(VBKGC.from_data(data, 4), data, cfg)
        hits = total = 0
        for batch in trainer.loader:
            h, r, t = batch.negatives.triples(batch.head, batch.rel, batch.tail)
            assert batch.negatives.twins
            assert batch.negatives.per_negative == (side_per == 'negative')
            hits += int(known.contains(h, r, t).sum())
            total += h.numel()
        return trainer, hits, total

    kwargs = dict(num_negatives=8, batch_size=32, twins=True, corrupt_side_per=side_per,
                  progress=False)
    trainer, hits, total = known_negatives(TrainConfig(**kwargs))
    assert trainer.config.filter_negatives is True  # resolved from the model's default
    assert trainer.loader.sampler.known is not None and total > 500
    assert hits == 0
    trainer, hits, total = known_negatives(TrainConfig(filter_negatives=False, **kwargs))
    assert trainer.config.filter_negatives is False and hits > total // 20
    # other models keep unfiltered negatives by default
    assert Trainer(TBKGC.from_data(data, 4), data,
                   TrainConfig(progress=False)).config.filter_negatives is False


@pytest.mark.parametrize('normalize', [False, True])
def test_twins_with_a_side_per_negative_equal_naive(normalize):
    # One positive's twins negatives mix head and tail corruptions; each scores as Eq. 4-9
    # with the replaced entity's own structural view in the cross-modal terms.
    model, feats, masks = make(normalize=normalize)
    n = normalize
    h, r, t = triples()
    K = 6
    neg = NegativeSampler(N, K, generator=torch.Generator().manual_seed(4), twins=True,
                          side_per='negative')(h, r, t)
    assert bool((neg.corrupt_head.any(1) & (~neg.corrupt_head).any(1)).any())
    with torch.no_grad():
        pos, twins = model.score_negatives(h, r, t, neg)
        assert torch.allclose(pos, model(h, r, t), atol=1e-12)
        for b in range(len(h)):
            rr = model.rel_emb.weight[int(r[b])]
            for k in range(K):
                ch = bool(neg.corrupt_head[b, k])
                cs, cm = embeddings(model, feats, masks, int(neg.index[b, k]))
                es, _ = embeddings(model, feats, masks, int(h[b]) if ch else int(t[b]))
                hs, hm = (cs, cm) if ch else embeddings(model, feats, masks, int(h[b]))
                ts, tm = embeddings(model, feats, masks, int(t[b])) if ch else (cs, cm)
                hs_x, ts_x = (es, ts) if ch else (hs, es)
                want = (f(hs, rr, ts, n) + f(hm, rr, tm, n) + f(hs_x, rr, tm, n) +
                        f(hm, rr, ts_x, n) + f(hs_x + hm, rr, ts_x + tm, n))
                assert twins[b, k] == pytest.approx(float(want), abs=1e-9)
