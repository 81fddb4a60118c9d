import math

import pytest
import torch
from _adversary_data import N, R, batch as _batch, graph, multimodal_model

from torch_mmkg.nn import MMKRL, AdaMF, SoftplusLoss
from torch_mmkg.testing import (assert_critic_step, assert_generator_step,
                                assert_resumes_exactly, withCUDA)
from torch_mmkg.training import (MMKRLAdversary, ModalityAdversary, TrainConfig, Trainer,
                                 seed_everything)

d = 4

pytestmark = pytest.mark.usefixtures('single_thread')


def _mmkrl(dtype=torch.float64, **kwargs):
    return multimodal_model(MMKRL, d, dtype, margin=2.0, **kwargs)


def _hinge(pos, neg, margin):
    r"""OpenKE's MarginLoss on energies E = -s, as MMKRLTrainer calls it: p_score a [B, 1]
    column, the other scores a [B] row, broadcast to every pair: mean(max(E_p - E_n, -g)) +
    g, written with loops."""
    vals = [max(-p + n, -margin) + margin for p in pos.tolist() for n in neg.tolist()]
    return sum(vals) / len(vals)


def test_is_an_adversary_and_rejects_bad_input():
    assert issubclass(MMKRLAdversary, ModalityAdversary)
    feats = {'image': torch.randn(N, 6)}
    with pytest.raises(TypeError, match=r"AdaMF lacks \['offset_score_stacks'\]"):
        MMKRLAdversary(AdaMF(N, R, d, feats))
    for kwargs, match in [({'adversarial_weight': -0.1}, 'adversarial_weight'),
                          ({'synthetic_pairing': 'pairwise'}, 'synthetic_pairing'),
                          ({'generator_lr': 0.0}, 'generator_lr'),
                          ({'hidden_channels': 0}, 'hidden_channels'),
                          ({'noise_channels': 0}, 'noise_channels'),
                          ({'critic_through_generator': 'yes'}, 'critic_through_generator')]:
        with pytest.raises(ValueError, match=match):
            MMKRLAdversary(_mmkrl(), **kwargs)


def test_generator_and_defaults_are_the_authors():
    # BaseGenerator: Linear(64 + d, 512) -> LeakyReLU(0.01) -> Linear(512, d), noise first
    adv = MMKRLAdversary(_mmkrl(torch.float32))
    lin1, act, lin2 = adv.generator
    assert (lin1.in_features, lin1.out_features) == (64 + d, 512)
    assert (lin2.in_features, lin2.out_features) == (512, d)
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.01
    assert adv.adversarial_weight == 0.07 and adv.synthetic_pairing == 'batch'
    assert adv.generator_lr is None and adv.critic_through_generator
    model = _mmkrl()
    adv = MMKRLAdversary(model, hidden_channels=8).double()
    stack, _ = model.modality_stack(torch.arange(N))
    z = torch.randn(N, 64, dtype=torch.float64)
    g = adv.generate(stack, z)
    W1, b1, W2, b2 = (p.detach() for p in adv.generator.parameters())
    for e in range(N):
        a = W1 @ torch.cat([z[e], model.node_emb.weight[e].detach()]) + b1
        assert torch.allclose(g[e], W2 @ torch.where(a > 0, a, 0.01 * a) + b2, atol=1e-12)
    # only the structural slot and the noise reach it
    other = stack.clone()
    other[:, 1:] = 1e3
    assert torch.equal(adv.generate(other, z), g)


@pytest.mark.parametrize('pairing', ['batch', 'aligned'])
def test_losses_are_the_formulas(pairing):
    adv = MMKRLAdversary(_mmkrl(), synthetic_pairing=pairing)
    pos = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    fake = torch.tensor([0.3, -1.2, 2.7, -3.5], dtype=torch.float64)
    if pairing == 'batch':
        want_d, want_g = _hinge(pos, fake, 2.0), _hinge(fake, pos, 2.0)
    else:  # each positive against its own synthetic triple
        want_d = sum(max(2.0 - p + f, 0.0) for p, f in zip(pos.tolist(), fake.tolist())) / 4
        want_g = sum(max(2.0 - f + p, 0.0) for p, f in zip(pos.tolist(), fake.tolist())) / 4
    assert abs(float(adv.discriminator_loss(pos, fake)) - want_d) < 1e-12
    assert abs(float(adv.generator_loss(fake, pos)) - want_g) < 1e-12
    # the pairing matters on these scores
    assert abs(_hinge(pos, fake, 2.0) - sum(
        max(2.0 - p + f, 0.0) for p, f in zip(pos.tolist(), fake.tolist())) / 4) > 0.1


def _fake_scores(model, adv, h, r, t, through):
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    eh, et = (hs[:, 0], ts[:, 0]) if through else (hs[:, 0].detach(), ts[:, 0].detach())
    gh = adv.generator(torch.cat([torch.randn(h.numel(), 64, dtype=hs.dtype), eh], 1))
    gt = adv.generator(torch.cat([torch.randn(t.numel(), 64, dtype=ts.dtype), et], 1))
    return (model.score_stacks(hs, hm, r, ts, tm),
            model.offset_score_stacks(hs, hm, r, ts, tm, gh, gt))


def _critic_by_hand(model, adv, batch, mu, through, seed):
    r"""MMKRLTrainer's D step, transcribed: the model's loss (with the alignment) plus
    mu * MarginLoss(p_score, fake_score) over every pair of the batch; the gradients."""
    h, r, t, neg = batch
    torch.manual_seed(seed)
    model.zero_grad()
    pos, fake = _fake_scores(model, adv, h, r, t, through)
    E_p, E_f = -pos[:, None], -fake[None, :]
    adv_loss = (torch.clamp(E_p - E_f, min=-2.0) + 2.0).mean()
    (model.loss(h, r, t, neg) + mu * adv_loss).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_critic_step_is_the_formula():
    model = _mmkrl()
    adv = MMKRLAdversary(model, hidden_channels=16, adversarial_weight=0.3).double()
    detached = MMKRLAdversary(model, hidden_channels=16, adversarial_weight=0.3,
                              critic_through_generator=False).double()
    batch = _batch()
    out = assert_critic_step(model, adv, detached, batch,
                             lambda through: _critic_by_hand(model, adv, batch, 0.3, through, 3))
    assert set(out) == {'loss', 'kgc', 'adv', 'generator'}
    assert torch.isclose(out['loss'], out['kgc'] + 0.3 * out['adv'], atol=1e-12)


def test_generator_step_is_the_formula_and_touches_only_the_generator():
    model = _mmkrl()
    adv = MMKRLAdversary(model, hidden_channels=16).double()
    batch = _batch()
    h, r, t, _ = batch

    def by_hand():  # L_G = MarginLoss(fake_score, p_score) over every pair
        pos, fake = _fake_scores(model, adv, h, r, t, False)
        return (torch.clamp(-fake[:, None] + pos.detach()[None, :], min=-2.0) + 2.0).mean()

    # the critic step leaves G alone, the generator step the model; L_G on the noise drawn
    # after the critic step's two draws, with the stepped model's real scores
    assert_generator_step(model, adv, batch, by_hand, [(8, 64)] * 2)


def test_mu_zero_leaves_the_model_as_without_it_and_other_losses():
    batches = [_batch(seed=s) for s in range(4)]
    plain = _mmkrl(torch.float32)
    opt = torch.optim.Adam(plain.parameters(), lr=0.05)
    for b in batches:
        opt.zero_grad()
        plain.loss(*b).backward()
        opt.step()

    def run(mu, **kwargs):
        model = _mmkrl(torch.float32, **kwargs)
        adv = MMKRLAdversary(model, hidden_channels=16, adversarial_weight=mu)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        gopt = torch.optim.Adam(adv.generator_parameters(), lr=0.05)
        gen_before = [p.detach().clone() for p in adv.generator_parameters()]
        for b in batches:
            out = adv.train_step(b, opt, gopt)
            assert all(torch.isfinite(v) for v in out.values())
        assert all(not torch.equal(a, b) for a, b in zip(gen_before, adv.generator_parameters()))
        return model, out

    model, out = run(0.0)
    assert out['adv'] > 0 and out['loss'] == out['kgc']
    for (n, a), b in zip(plain.named_parameters(), model.parameters()):
        assert torch.equal(a, b), n
    model, _ = run(0.5)
    assert not torch.equal(plain.node_emb.weight, model.node_emb.weight)
    # the model's own loss, whatever it is, judges the synthetic triples
    model, out = run(0.5, loss=SoftplusLoss())
    adv = MMKRLAdversary(model)
    pos, fake = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0])
    assert torch.isclose(adv.discriminator_loss(pos, fake),
                         SoftplusLoss()(pos, fake[None].expand(2, 2)))


def test_trainer_trains_resumes_exactly_and_errors(tmp_path):
    data = graph()
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.01, num_negatives=4, eval_every=2,
                      progress=False, seed=3, checkpoint_every=2,
                      mmkrl_adversary={'hidden_channels': 16, 'generator_lr': 1e-3})

    def model():
        seed_everything(0)
        return MMKRL.from_data(data, 8, margin=2.0)

    trainer = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'built'))
    assert isinstance(trainer.comat, MMKRLAdversary)
    assert trainer.generator_optimizer.param_groups[0]['lr'] == 1e-3
    full = assert_resumes_exactly(model, data, cfg, str(tmp_path), stop_after_epoch=2)
    # without the adversary the run differs
    plain = Trainer(model(), data, TrainConfig(**{**cfg.to_dict(), 'mmkrl_adversary': None,
                                                  'checkpoint_every': 0})).fit()
    assert [h['loss'] for h in plain['history']] != [h['loss'] for h in full['history']]
    with pytest.raises(ValueError, match='comat, mmkrl_adversary are different'):
        TrainConfig(comat={}, mmkrl_adversary={})
    with pytest.raises(ValueError, match='mmkrl_adversary must be'):
        TrainConfig(mmkrl_adversary='yes')
    with pytest.raises(ValueError, match='mmkrl_adversary trains with negative sampling'):
        Trainer(model(), data, TrainConfig(regime='1-n', mmkrl_adversary={}, progress=False))
    with pytest.raises(TypeError, match='offset_score_stacks'):
        Trainer(AdaMF.from_data(data, 4), data, TrainConfig(mmkrl_adversary={},
                                                            progress=False))


@withCUDA
def test_trainer_on_device(device):
    # the generator, its noise and the synthetic triples follow the model to the device
    data = graph()
    seed_everything(0)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.01, num_negatives=4, eval_every=2,
                      progress=False, seed=3, test=False, device=str(device),
                      mmkrl_adversary={'hidden_channels': 16})
    trainer = Trainer(MMKRL.from_data(data, 8, margin=2.0), data, cfg)
    res = trainer.fit()
    assert {p.device.type for p in trainer.comat.generator_parameters()} == {device.type}
    assert len(res['history']) == 2
    assert all(math.isfinite(h['loss']) for h in res['history'])
