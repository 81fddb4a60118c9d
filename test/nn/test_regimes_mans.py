r"""MANS (torch_mmkg.nn.sampling.mans) against naive transcriptions: the visual negatives
(the replaced entity's structural embedding with the candidate's modality embeddings, for
K > 1 too), the same- and cross-modal energies of IKRL's four distances and of a fused
model, and the composition of every mode (V, T, H, A)."""
import pytest
import torch

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import IKRL, LBMKGC, MANS, REGIMES, TransE
from torch_mmkg.nn.loss import MarginRankingLoss

N, R, D = 14, 2, 4
DT = torch.float64


pytestmark = pytest.mark.usefixtures('single_thread')  # test/conftest.py


def _features():
    gen = torch.Generator().manual_seed(3)
    return ({'image': torch.randn(N, 6, generator=gen), 'text': torch.randn(N, 5, generator=gen)},
            {'image': torch.arange(N) % 4 != 0, 'text': torch.ones(N, dtype=torch.bool)})


def _ikrl():
    torch.manual_seed(0)
    feats, masks = _features()
    return IKRL(N, R, D, feats, masks, margin=2.0).to(DT)


def _batch(B=4, K=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randint(0, N, (B, ), generator=gen)
    r = torch.randint(0, R, (B, ), generator=gen)
    t = torch.randint(0, N, (B, ), generator=gen)
    return h, r, t, NegativeSampler(N, K, generator=gen)(h, r, t)


def _d(a, r, b):
    return float((a + r - b).abs().sum())


def _ikrl_energy(model, hs, hi, r, ts, ti):
    r"""IKRL's four L1 distances: (same-modal, cross-modal)."""
    return _d(hs, r, ts) + _d(hi, r, ti), _d(hs, r, ti) + _d(hi, r, ts)


def _ikrl_views(model, e):
    s, i = model.embed(torch.tensor([int(e)]))
    return s[0], i[0]


def test_ikrl_energies_are_the_four_distances():
    model, regime = _ikrl(), MANS()
    h, r, t, neg = _batch()
    same, cross = regime.energies(model, h, r, t, neg)
    side = neg.side_mask()
    for b in range(h.numel()):
        rel = model.relation(r[b:b + 1])[0]
        for k in range(neg.index.size(1)):
            e = neg.index[b, k]
            hh, tt = (e, t[b]) if side[b, k] else (h[b], e)
            want = _ikrl_energy(model, *_ikrl_views(model, hh), rel, *_ikrl_views(model, tt))
            assert float(same[b, k]) == pytest.approx(want[0], abs=1e-10)
            assert float(cross[b, k]) == pytest.approx(want[1], abs=1e-10)


def _naive_loss(model, regime, h, r, t, neg, visual):
    r"""IKRL's margin loss with the given negatives [B, K] visual (V) or normal, by hand."""
    side = neg.side_mask()
    gamma = regime.loss_for(model).margin
    total, count = 0.0, 0
    for b in range(h.numel()):
        rel = model.relation(r[b:b + 1])[0]
        hs, hi = _ikrl_views(model, h[b])
        ts, ti = _ikrl_views(model, t[b])
        pos = -sum(_ikrl_energy(model, hs, hi, rel, ts, ti))
        for k in range(neg.index.size(1)):
            cs, ci = _ikrl_views(model, neg.index[b, k])
            if visual[b][k]:  # the replaced entity's structure, the candidate's image
                views = (hs, ci, ts, ti) if side[b, k] else (hs, hi, ts, ci)
            else:
                views = (cs, ci, ts, ti) if side[b, k] else (hs, hi, cs, ci)
            score = -sum(_ikrl_energy(model, views[0], views[1], rel, views[2], views[3]))
            total += max(0.0, gamma - pos + score)
            count += 1
    return total / count


def _first(B, K, n):
    return [[k * B + b < n for k in range(K)] for b in range(B)]


@pytest.mark.parametrize('mode', ['V', 'T', 'H', 'A'])
def test_modes_compose_as_written(mode):
    model = _ikrl()
    regime = MANS(mode=mode, beta=0.5, num_negatives=3)
    h, r, t, neg = _batch(B=4, K=3)
    B, K = 4, 3
    if mode == 'A':
        same, cross = regime.energies(model, h, r, t, neg)
        n = sum(1 for b in range(B) for k in range(K) if cross[b, k] < same[b, k])
        assert 0 < n < B * K  # the test exercises both kinds
        visual = _first(B, K, n)
    elif mode == 'H':
        visual = _first(B, K, int(K * 0.5 * B))
    else:
        visual = _first(B, K, B * K)
    out = regime.loss(model, (h, r, t, neg))
    assert out.context['visual_mask'].tolist() == visual
    assert float(out.loss) == pytest.approx(_naive_loss(model, regime, h, r, t, neg, visual),
                                            abs=1e-9)


def test_two_stage_schedule():
    regime = MANS(mode='T', beta=0.5)
    model = _ikrl()
    h, r, t, neg = _batch()
    stages = []
    for epoch in range(1, 5):
        regime.start_epoch(epoch, 4)
        stages.append(bool(regime.visual_mask(model, h, r, t, neg).all()))
        assert bool(regime.visual_mask(model, h, r, t, neg).any()) == stages[-1]
    assert stages == [True, True, False, False]
    regime.start_epoch(1, 10)
    regime.beta = 0.3
    assert [regime.start_epoch(e, 10) or regime.first_stage for e in range(1, 11)] == \
        [True] * 3 + [False] * 7


def test_fused_model_energies_use_masked_stacks():
    torch.manual_seed(0)
    feats, masks = _features()
    model = LBMKGC(N, R, D, feats, masks).to(DT)
    regime = MANS()
    h, r, t, neg = _batch(B=3, K=2)
    same, cross = regime.energies(model, h, r, t, neg)
    side = neg.side_mask()
    for b in range(3):
        for k in range(2):
            e = neg.index[b, k]
            hh, tt = (e, t[b]) if side[b, k] else (h[b], e)
            sh, mh = model.modality_stack(torch.tensor([int(hh)]))
            st, mt = model.modality_stack(torch.tensor([int(tt)]))
            only_s = torch.tensor([[True, False, False]])
            rr = r[b:b + 1]

            def f(ma, mb):
                return float(model.score_stacks(sh, mh & ma, rr, st, mt & mb))

            assert float(same[b, k]) == pytest.approx(-f(only_s, only_s) - f(~only_s, ~only_s),
                                                      abs=1e-10)
            assert float(cross[b, k]) == pytest.approx(-f(only_s, ~only_s) - f(~only_s, only_s),
                                                       abs=1e-10)


def test_arguments_and_models_are_checked():
    with pytest.raises(ValueError, match='mode'):
        MANS(mode='X')
    with pytest.raises(ValueError, match='beta'):
        MANS(beta=1.5)
    with pytest.raises(ValueError, match='twins'):
        MANS(twins=True)
    h, r, t, neg = _batch()
    with pytest.raises(ValueError, match='structural slot followed by at least one modality'):
        MANS().loss(TransE(N, R, D), (h, r, t, neg))
    assert REGIMES['MANS'] is MANS
    assert isinstance(_ikrl().loss_fn, MarginRankingLoss)


@pytest.mark.parametrize('name', ['kbgan_db15k.yaml', 'mans_db15k.yaml', 'mmrns_mkgw.yaml',
                                  'mmrns_db15k.yaml'])
def test_shipped_regime_configs_build_a_trainer(name):
    import dataclasses
    import os.path as osp

    from torch_mmkg import cli
    from torch_mmkg.datasets import FakeMMKGDataset
    from torch_mmkg.training import TrainConfig, Trainer
    pytest.importorskip('yaml')
    path = osp.join(osp.dirname(__file__), '..', '..', 'examples', 'configs', name)
    cfg = cli.load_config_file(path)
    data = FakeMMKGDataset(num_entities=16, num_relations=2, num_triples=40, num_clusters=2,
                           modalities={'image': 5, 'text': 4}, seed=0)[0]
    cfg['model_args'] = dict(cfg['model_args'], hidden_channels=4)
    model = cli.build_model(cfg, data)
    train = TrainConfig.from_dict(cfg['train'])
    train = dataclasses.replace(train, epochs=1, device='cpu', progress=False, batch_size=16,
                                checkpoint_every=0,
                                regime_args={**train.regime_args, 'pre_sample': 5}
                                if train.regime == 'mmrns' else train.regime_args)
    trainer = Trainer(model, data, train)
    assert trainer.regime.name == train.regime
    batch = next(iter(trainer.loader))
    assert torch.isfinite(trainer.regime.loss(model, batch).loss)
