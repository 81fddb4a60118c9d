import math

import pytest
import torch
from _adversary_data import N, R, batch as _batch, graph, multimodal_model
import torch.nn.functional as F

from torch_mmkg.nn import IKRL, TBKGC, AdaMF, RotatE
from torch_mmkg.testing import assert_critic_step, assert_generator_step, assert_resumes_exactly
from torch_mmkg.training import (MAT, CoMAT, ModalityAdversary, TrainConfig, Trainer,
                                 seed_everything)

d = 4


def _adamf(dtype=torch.float32, **kwargs):
    return multimodal_model(AdaMF, d, dtype, margin=3.0, **kwargs)


def _logsig(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def test_shares_comats_base_and_rejects_bad_options():
    assert issubclass(MAT, ModalityAdversary) and issubclass(CoMAT, ModalityAdversary)
    with pytest.raises(TypeError, match='modality_stack'):
        MAT(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match='at least one modality besides the structure'):
        MAT(RotatE(N, R, 4))
    with pytest.raises(ValueError, match='adversarial_weight'):
        MAT(_adamf(), adversarial_weight=-1.0)
    with pytest.raises(ValueError, match='synthetic_weighting'):
        MAT(_adamf(), synthetic_weighting='pairwise')
    with pytest.raises(ValueError, match='adversarial_temperature'):
        MAT(_adamf(), adversarial_temperature=float('nan'))
    with pytest.raises(ValueError, match='noise_channels'):
        MAT(_adamf(), noise_channels=0)
    with pytest.raises(ValueError, match='critic_through_generator'):
        MAT(_adamf(), critic_through_generator=1)


def test_generators_are_the_authors():
    # one generator per modality: Linear(64 + D, 512) -> LeakyReLU(0.01) -> Linear(512, D)
    mat = MAT(_adamf())
    assert len(mat.generator) == 2
    for g in mat.generator:
        lin1, act, lin2 = g
        assert (lin1.in_features, lin1.out_features) == (64 + 2 * d, 512)
        assert (lin2.in_features, lin2.out_features) == (512, 2 * d)
        assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.01
    assert mat.adversarial_temperature == 2.0 and mat.generator_lr == 1e-4
    assert MAT(_adamf(adversarial_temperature=1.5)).adversarial_temperature == 1.5
    # a model without a self-adversarial loss: the authors' 2
    assert MAT(TBKGC(N, R, 4, {'image': torch.randn(N, 3)})).adversarial_temperature == 2.0


def test_generate_is_the_formula():
    # e*_m = W2 LeakyReLU(W1 [z_m | e_s] + b1) + b2, the real e_s kept, all present
    model = _adamf(torch.float64)
    mat = MAT(model, hidden_channels=8).double()
    index = torch.arange(N)
    stack, mask = model.modality_stack(index)
    noise = torch.randn(N, 2, 64, dtype=torch.float64)
    fake, fmask = mat.generate(stack, mask, noise)
    assert fake.shape == stack.shape and bool(fmask.all())
    assert torch.equal(fake[:, 0], stack[:, 0])
    for m, g in enumerate(mat.generator):
        W1, b1 = g[0].weight.detach(), g[0].bias.detach()
        W2, b2 = g[2].weight.detach(), g[2].bias.detach()
        for e in range(N):
            x = torch.cat([noise[e, m], stack[e, 0].detach()])
            a = W1 @ x + b1
            a = torch.where(a > 0, a, 0.01 * a)
            assert torch.allclose(fake[e, m + 1], W2 @ a + b2, atol=1e-12)
    # only the structural slot (and the noise) reach the generators
    garbage = stack.clone()
    garbage[:, 1:] = 1e3
    assert torch.equal(mat.generate(garbage, ~mask, noise)[0][:, 1:], fake[:, 1:])
    assert not torch.allclose(mat.generate(stack, mask)[0][:, 1:], fake[:, 1:])


@pytest.mark.parametrize('weighting', ['batch', 'uniform'])
def test_losses_are_the_formulas(weighting):
    mat = MAT(_adamf(), synthetic_weighting=weighting, adversarial_temperature=2.0)
    pos = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    fake = torch.tensor([0.3, 1.2, -0.7, 2.5], dtype=torch.float64)
    # SigmoidLoss(s+, s_j) with the synthetic scores as the negatives: the authors' code
    # passes them as one row, so the self-adversarial softmax is over the batch
    top = max(fake.tolist())
    ex = [math.exp(2.0 * (f - top)) for f in fake.tolist()]
    w = ([x / sum(ex) for x in ex] if weighting == 'batch' else [0.25] * 4)
    want = -0.5 * (sum(_logsig(p) for p in pos.tolist()) / 4 +
                   sum(wb * _logsig(-f) for wb, f in zip(w, fake.tolist())))
    assert abs(float(mat.discriminator_loss(pos, fake)) - want) < 1e-12
    # the weights are constants
    f = fake.clone().requires_grad_()
    mat.discriminator_loss(pos, f).backward()
    want = [-0.5 * wb * -(1 - 1 / (1 + math.exp(fb))) for wb, fb in zip(w, fake.tolist())]
    assert torch.allclose(f.grad, torch.tensor(want, dtype=torch.float64), atol=1e-12)
    # SigmoidLoss(s_j, s+): the synthetic scores as positives, one real score per row
    want = -0.5 * (sum(_logsig(f) for f in fake.tolist()) / 4 +
                   sum(_logsig(-p) for p in pos.tolist()) / 4)
    assert abs(float(mat.generator_loss(fake, pos)) - want) < 1e-12


def _by_hand(model, mat, batch, mu, through, seed):
    r"""The critic's gradient and the generator's loss and gradient, transcribed: L_D =
    L_kge + mu sum_j SigmoidLoss(s+, s_j), then L_G = sum_j SigmoidLoss(s_j, s+) on fresh
    noise, each synthetic entity [e_s, G_1(z_1 | e_s), G_2(z_2 | e_s)] scored by the model."""
    h, r, t, neg = batch
    torch.manual_seed(seed)
    model.zero_grad()

    def synth(stack, detach):
        e_s = stack[:, 0].detach() if detach else stack[:, 0]
        z = torch.randn(stack.size(0), 2, 64, dtype=stack.dtype)
        out = [g(torch.cat([z[:, m], e_s], dim=1)) for m, g in enumerate(mat.generator)]
        return torch.cat([stack[:, :1], torch.stack(out, 1)], 1), torch.ones(
            stack.shape[:2], dtype=torch.bool)

    def sigmoid_loss(p, n, batch_weights):
        w = (torch.softmax(mat.adversarial_temperature * n.detach(), 0) if batch_weights
             else torch.ones_like(n) / n.numel())
        return -(F.logsigmoid(p).mean() + (w * F.logsigmoid(-n)).sum()) / 2

    kge = model.loss(h, r, t, neg)
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    fh, ft = synth(hs, not through), synth(ts, not through)
    s = model.score_stacks
    pos = s(hs, hm, r, ts, tm)
    fakes = [s(*fh, r, ts, tm), s(hs, hm, r, *ft), s(*fh, r, *ft)]
    (kge + mu * sum(sigmoid_loss(pos, f, True) for f in fakes)).backward()
    critic = {n: p.grad.clone() for n, p in model.named_parameters()}
    return critic


def test_critic_step_is_the_formula():
    model = _adamf(torch.float64)
    mat = MAT(model, hidden_channels=16, adversarial_weight=0.7).double()
    detached = MAT(model, hidden_channels=16, adversarial_weight=0.7,
                   critic_through_generator=False).double()
    batch = _batch()
    out = assert_critic_step(model, mat, detached, batch,
                             lambda through: _by_hand(model, mat, batch, 0.7, through, 3))
    assert set(out) == {'loss', 'kgc', 'adv', 'generator'}


def test_generator_step_is_the_formula_and_touches_only_the_generators():
    model = _adamf(torch.float64)
    mat = MAT(model, hidden_channels=16, adversarial_weight=0.5).double()
    batch = _batch()
    h, r, t, _ = batch
    gens = [g for g in mat.generator]

    def synth(stack):
        z = torch.randn(stack.size(0), 2, 64, dtype=stack.dtype)
        out = [g(torch.cat([z[:, m], stack[:, 0]], 1)) for m, g in enumerate(gens)]
        return torch.cat([stack[:, :1], torch.stack(out, 1)], 1), torch.ones(
            stack.shape[:2], dtype=torch.bool)

    def by_hand():  # L_G on the stepped model
        hs, hm = (x.detach() for x in model.modality_stack(h))
        ts, tm = (x.detach() for x in model.modality_stack(t))
        fh, ft = synth(hs), synth(ts)
        s = model.score_stacks
        pos = s(hs, hm, r, ts, tm).detach()
        return sum(-(F.logsigmoid(f).mean() + F.logsigmoid(-pos).mean()) / 2
                   for f in (s(*fh, r, ts, tm), s(hs, hm, r, *ft), s(*fh, r, *ft)))

    # the noise of the generator step is drawn after the critic step's two draws
    assert_generator_step(model, mat, batch, by_hand, [(8, 2, 64)] * 2)


def test_mu_zero_leaves_the_model_as_without_mat():
    # the authors' scripts (-mu=0): the model's parameters evolve bit for bit as without MAT
    # (the generators still train)
    batches = [_batch(seed=s) for s in range(4)]
    plain = _adamf()
    opt = torch.optim.Adam(plain.parameters(), lr=0.05)
    for b in batches:
        opt.zero_grad()
        plain.loss(*b).backward()
        opt.step()
    model = _adamf()
    mat = MAT(model, hidden_channels=16, adversarial_weight=0.0)
    gen_before = [p.detach().clone() for p in mat.generator_parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gopt = torch.optim.Adam(mat.generator_parameters(), lr=0.05)
    for b in batches:
        out = mat.train_step(b, opt, gopt)
        assert out['adv'] > 0 and out['loss'] == out['kgc']
    for (n, a), b in zip(plain.named_parameters(), model.parameters()):
        assert torch.equal(a, b), n
    assert all(not torch.equal(a, b) for a, b in zip(gen_before, mat.generator_parameters()))
    # mu > 0 moves the model elsewhere
    other = _adamf()
    mat = MAT(other, hidden_channels=16, adversarial_weight=1e-1)
    opt = torch.optim.Adam(other.parameters(), lr=0.05)
    gopt = torch.optim.Adam(mat.generator_parameters(), lr=0.05)
    for b in batches:
        mat.train_step(b, opt, gopt)
    assert not torch.equal(plain.node_emb.weight, other.node_emb.weight)


@pytest.mark.parametrize('make', [
    lambda: TBKGC(N, R, 4, {'image': torch.randn(N, 6)}, {'image': torch.arange(N) % 4 != 0}),
    lambda: IKRL(N, R, 4, {'image': torch.randn(N, 6), 'text': torch.randn(N, 3)}),
])
def test_wraps_other_models(make):
    torch.manual_seed(0)
    model = make()
    mat = MAT(model, hidden_channels=16, adversarial_weight=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    out = mat.train_step(_batch(), torch.optim.SGD(model.parameters(), lr=0.1),
                         torch.optim.SGD(mat.generator_parameters(), lr=0.1))
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


_data = graph


def test_trainer_mu_zero_matches_plain_training():
    data = _data()

    def run(mat):
        seed_everything(0)
        model = AdaMF.from_data(data, 4, margin=2.0)
        cfg = TrainConfig(epochs=3, batch_size=64, lr=0.01, num_negatives=4, eval_every=1,
                          progress=False, seed=3, test=False, mat=mat)
        trainer = Trainer(model, data, cfg)
        res = trainer.fit()
        return res, model, trainer

    plain, plain_model, _ = run(None)
    res, model, trainer = run({'adversarial_weight': 0.0})
    assert isinstance(trainer.comat, MAT) and trainer.comat.adversarial_weight == 0.0
    assert [h['loss'] for h in res['history']] == [h['loss'] for h in plain['history']]
    assert [h['val'] for h in res['history']] == [h['val'] for h in plain['history']]
    for (n, a), b in zip(plain_model.named_parameters(), model.parameters()):
        assert torch.equal(a, b), n


def test_trainer_with_mat_resumes_exactly_and_errors(tmp_path):
    data = _data()
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.01, num_negatives=4, eval_every=2,
                      progress=False, seed=3, checkpoint_every=2,
                      mat={'adversarial_weight': 1e-2, 'hidden_channels': 16})

    def model():
        seed_everything(0)
        return AdaMF.from_data(data, 4, margin=2.0)

    assert_resumes_exactly(model, data, cfg, str(tmp_path), stop_after_epoch=2)
    with pytest.raises(ValueError, match='comat, mat are different'):
        TrainConfig(comat={}, mat={})
    with pytest.raises(ValueError, match='mat must be'):
        TrainConfig(mat='yes')
    with pytest.raises(ValueError, match='negative sampling'):
        Trainer(model(), data, TrainConfig(regime='1-n', mat={}, progress=False))
    with pytest.raises(ValueError, match='synthetic_weighting'):
        Trainer(model(), data, TrainConfig(mat={'synthetic_weighting': 'x'}, progress=False))
