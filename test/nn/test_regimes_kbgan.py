r"""KBGAN (torch_mmkg.nn.sampling.kbgan) against naive transcriptions: the REINFORCE gradient
of the generator, the discriminator's step, the baselines, a generator that learns to pick
planted hard negatives, and the regime inside the Trainer (parameter groups, checkpoints)."""
import os.path as osp

import pytest
import torch

from torch_mmkg.loader import NegativeSampler, Negatives
from torch_mmkg.nn import KBGAN, REGIMES, DistMult, TransE
from torch_mmkg.nn.loss import MarginRankingLoss

N, R, D = 12, 2, 4
DT = torch.float64


pytestmark = pytest.mark.usefixtures('single_thread')  # test/conftest.py


def _models(seed=0):
    torch.manual_seed(seed)
    return TransE(N, R, D, margin=1.0).to(DT), DistMult(N, R, D).to(DT)


def _batch(B=5, C=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randint(0, N, (B, ), generator=gen)
    r = torch.randint(0, R, (B, ), generator=gen)
    t = torch.randint(0, N, (B, ), generator=gen)
    cand = NegativeSampler(N, C, generator=gen)(h, r, t)
    return h, r, t, cand


def _score(model, h, r, t, side, e):
    hh, tt = (e, t) if side else (h, e)
    return model(torch.tensor([int(hh)]), torch.tensor([int(r)]), torch.tensor([int(tt)]))[0]


@pytest.mark.parametrize('reduction', ['sum', 'mean'])
def test_reinforce_gradient_is_the_naive_one(reduction):
    D_, G = _models()
    regime = KBGAN(loss=MarginRankingLoss(1.0), num_negatives=2, generator=G,
                   generator_reduction=reduction, baseline='running',
                   temperature=0.7).bind(D_)
    regime.baseline_value.fill_(0.3)  # a baseline that is not zero
    regime.baseline = 'none'  # ... and stays as it is during the step
    h, r, t, cand = _batch()
    regime._rng = torch.Generator().manual_seed(5)
    out = regime.loss(D_, (h, r, t, cand))
    out.loss.backward()
    choice = out.context['choice']
    # naive: the policy from G's forward scores, the reward from D's forward scores
    G2 = DistMult(N, R, D).to(DT)
    G2.load_state_dict(G.state_dict())
    side = cand.side_mask()
    B, C = cand.index.shape
    surrogate, d_loss, n = 0.0, 0.0, choice.size(1)
    for b in range(B):
        g = torch.stack([_score(G2, h[b], r[b], t[b], side[b, c], cand.index[b, c])
                         for c in range(C)])
        logp = g / 0.7 - torch.log(torch.exp(g / 0.7).sum())
        pos = float(_score(D_, h[b], r[b], t[b], False, t[b]))
        for j in range(n):
            c = int(choice[b, j])
            reward = float(_score(D_, h[b], r[b], t[b], side[b, c], cand.index[b, c]))
            surrogate = surrogate - (reward - 0.3) * logp[c]
            d_loss += max(0.0, 1.0 - pos + reward)
    if reduction == 'mean':
        surrogate = surrogate / (B * n)
    surrogate.backward()
    for (name, p), p2 in zip(G.named_parameters(), G2.parameters()):
        assert torch.allclose(p.grad, p2.grad, atol=1e-10), name
    # the value of the loss is the discriminator's alone (the surrogate is worth zero)
    assert float(out.loss) == pytest.approx(d_loss / (B * n), abs=1e-10)


def test_discriminator_gradient_is_its_loss_alone():
    D_, G = _models()
    regime = KBGAN(num_negatives=1, generator=G).bind(D_)
    h, r, t, cand = _batch()
    regime._rng = torch.Generator().manual_seed(1)
    out = regime.loss(D_, (h, r, t, cand))
    out.loss.backward()
    grads = [p.grad.clone() for p in D_.parameters()]
    D_.zero_grad()
    neg = out.context['negatives']
    pos, negs = D_.score_negatives(h, r, t, neg)
    regime.loss_for(D_)(pos, negs).backward()
    for g, p in zip(grads, D_.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-12)


def test_candidates_are_the_loaders():
    D_, G = _models()
    regime = KBGAN(num_negatives=3, num_candidates=6, generator=G)
    h, r, t, _ = _batch(B=20)
    loader = regime.loader(D_, h, r, t, batch_size=7,
                           generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch[3].index.shape == (7, 6)
    out = regime.loss(D_, batch)
    drawn = out.context['negatives'].index
    assert drawn.shape == (7, 3)
    assert (drawn == batch[3].index.gather(1, out.context['choice'])).all()


def test_baselines():
    D_, G = _models()
    h, r, t, cand = _batch()
    for kind in ('running', 'epoch', 'none'):
        regime = KBGAN(num_negatives=2, generator=G, baseline=kind).bind(D_)
        regime._rng = torch.Generator().manual_seed(0)
        rewards, seen = [], []
        for epoch in (1, 2):
            regime.start_epoch(epoch, 2)
            epoch_rewards = []
            for _ in range(3):
                out = regime.loss(D_, (h, r, t, cand))
                seen.append(float(out.context['baseline']))
                epoch_rewards.append(out.context['reward'])
            rewards.append(epoch_rewards)
        flat = [x for e in rewards for x in e]
        if kind == 'running':
            want = [0.0] + [float(torch.cat([x.reshape(-1) for x in flat[:i]]).mean())
                            for i in range(1, 6)]
        elif kind == 'epoch':
            first = float(torch.cat([x.reshape(-1) for x in rewards[0]]).mean())
            want = [0.0] * 3 + [first] * 3
        else:
            want = [0.0] * 6
        assert seen == pytest.approx(want, abs=1e-12), kind
    # no update without gradients (evaluation)
    regime = KBGAN(generator=G, baseline='running').bind(D_)
    with torch.no_grad():
        regime.loss(D_, (h, r, t, cand))
    assert float(regime.reward_count) == 0 and float(regime.baseline_value) == 0


def test_generator_learns_planted_hard_negatives():
    # D is fixed: for the query (0, 0, ?), tail 5 sits at h + r (the hard negative); the
    # other candidates are far. G learns to pick 5.
    torch.manual_seed(0)
    D_ = TransE(10, 1, 4, margin=0.0).to(DT)
    with torch.no_grad():
        D_.node_emb.weight.copy_(torch.randn(10, 4, dtype=DT) * 3)
        D_.node_emb.weight[5] = D_.node_emb.weight[0] + D_.rel_emb.weight[0] + 0.05
    for p in D_.parameters():
        p.requires_grad_(False)
    G = DistMult(10, 1, 4, regularization_weight=0.0).to(DT)
    regime = KBGAN(num_negatives=4, generator=G, baseline='running').bind(D_)
    regime._rng = torch.Generator().manual_seed(0)
    h, r, t = torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    cand = Negatives(torch.tensor([[2, 3, 4, 5, 6, 7]]), torch.tensor([False]))
    opt = torch.optim.Adam(G.parameters(), lr=0.05)
    before = float(regime.policy(h, r, t, cand).exp()[0, 3])
    for _ in range(150):
        opt.zero_grad()
        regime.loss(D_, (h, r, t, cand)).loss.backward()
        opt.step()
    after = float(regime.policy(h, r, t, cand).exp()[0, 3])
    assert before < 0.4 and after > 0.9, (before, after)


def test_arguments_are_checked():
    D_, G = _models()
    with pytest.raises(ValueError, match='num_candidates'):
        KBGAN(num_candidates=1)
    with pytest.raises(ValueError, match='temperature'):
        KBGAN(temperature=0.0)
    with pytest.raises(ValueError, match='baseline'):
        KBGAN(baseline='mean')
    with pytest.raises(ValueError, match='generator_reduction'):
        KBGAN(generator_reduction='max')
    with pytest.raises(ValueError, match='twins'):
        KBGAN(twins=True)
    with pytest.raises(ValueError, match='generator'):
        KBGAN(generator=3)
    with pytest.raises(ValueError, match='model'):
        KBGAN(generator='no_such_model')
    with pytest.raises(ValueError, match='entities'):
        KBGAN(generator=DistMult(N + 1, R, D)).bind(D_)
    assert isinstance(KBGAN(margin=3.0).loss_fn, MarginRankingLoss)
    assert REGIMES['KBGAN'] is KBGAN


def _data():
    from torch_mmkg.datasets import FakeMMKGDataset
    return FakeMMKGDataset(num_entities=20, num_relations=2, num_clusters=3, num_triples=90,
                           modalities={'image': 5, 'text': 4}, seed=0)[0]


def test_trainer_groups_checkpoint_and_resume(tmp_path):
    from torch_mmkg.training import TrainConfig, Trainer, seed_everything
    data = _data()

    def model():
        seed_everything(0)
        return TransE(20, 2, 4, margin=1.0)

    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.01, num_negatives=1, eval_every=2,
                      progress=False, seed=1, regime='kbgan', checkpoint_every=2,
                      sampling='bernoulli',
                      regime_args=dict(num_candidates=5, generator_lr=0.05, margin=1.0,
                                       generator_weight_decay=0.01,
                                       generator_args={'hidden_channels': 6}))
    full = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'a'))
    groups = full.optimizer.param_groups
    assert len(groups) == 2 and groups[1]['lr'] == 0.05 and groups[1]['weight_decay'] == 0.01
    assert groups[0]['lr'] == 0.01 and full.regime.generator.hidden_channels == 6
    g0 = [p.detach().clone() for p in full.regime.generator.parameters()]
    res = full.fit()
    assert any(not torch.equal(a, b) for a, b in zip(g0, full.regime.generator.parameters()))
    ckpt = torch.load(osp.join(tmp_path, 'a', 'checkpoint.pt'), weights_only=False)
    assert 'generator.rel_emb.weight' in ckpt['regime'] and 'baseline_value' in ckpt['regime']
    first = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'b'))
    first.fit(stop_after_epoch=3)
    torch.manual_seed(77)
    resumed = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'b')).fit(resume=True)
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in res['history']]
    with pytest.raises(ValueError, match='regime_args'):
        Trainer(model(), data, TrainConfig(regime='ns', regime_args={'a': 1}, progress=False))
    with pytest.raises(ValueError, match='bad regime_args'):
        Trainer(model(), data, TrainConfig(regime='kbgan', regime_args={'nope': 1},
                                           progress=False))


def test_pretrained_states_are_loaded(tmp_path):
    D_, G = _models()
    torch.save(G.state_dict(), tmp_path / 'g.pt')
    torch.save(D_.state_dict(), tmp_path / 'd.pt')
    D2, _ = _models(seed=3)
    regime = KBGAN(generator_checkpoint=str(tmp_path / 'g.pt'),
                   discriminator_checkpoint=str(tmp_path / 'd.pt')).bind(D2)
    assert torch.equal(regime.generator.rel_emb.weight, G.rel_emb.weight)
    assert torch.equal(D2.node_emb.weight, D_.node_emb.weight)
