import pytest
import torch

from torch_mmkg.data import ENTITY, get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import LBMKGC, NATIVE, TBKGC, RotatE
from torch_mmkg.training import CoMAT, TrainConfig, Trainer, seed_everything

N, R = 20, 3


def _native(dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    feats = {'text': torch.randn(N, 5), 'numeric': torch.randn(N, 3)}
    masks = {'text': torch.arange(N) % 3 != 0, 'numeric': torch.arange(N) % 2 == 0}
    return NATIVE(N, R, 4, feats, masks, margin=3.0, **kwargs).to(dtype)


def _tbkgc(**kwargs):
    torch.manual_seed(0)
    feats = {'image': torch.randn(N, 6)}
    return TBKGC(N, R, 4, feats, {'image': torch.arange(N) % 4 != 0}, **kwargs)


def _lbmkgc(**kwargs):
    torch.manual_seed(0)
    feats = {'text': torch.randn(N, 5), 'numeric': torch.randn(N, 3)}
    masks = {'text': torch.arange(N) % 3 != 0, 'numeric': torch.arange(N) % 2 == 0}
    return LBMKGC(N, R, 4, feats, masks, margin=3.0, **kwargs)


def _batch(n=8, K=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    h, r, t = (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
               torch.randint(0, N, (n, ), generator=g))
    return h, r, t, NegativeSampler(N, K, generator=g)(h, r, t)


def test_rejects_models_without_modality_representations():
    with pytest.raises(TypeError, match='modality_stack'):
        CoMAT(torch.nn.Linear(2, 2))
    # a structural model has a one-slot stack: nothing to synthesise
    with pytest.raises(ValueError, match='at least one modality besides the structure'):
        CoMAT(RotatE(N, R, 4))
    with pytest.raises(ValueError, match='gan_loss'):
        CoMAT(_native(), gan_loss='hinge')
    with pytest.raises(ValueError, match='discriminator'):
        CoMAT(_native(), discriminator='cnn')


def test_generator_keeps_structure_and_ignores_missing_inputs():
    model = _native()
    comat = CoMAT(model, hidden_channels=16)
    index = torch.arange(N)
    stack, mask = model.modality_stack(index)
    noise = torch.randn(N, comat.noise_channels)
    fake, fmask = comat.generate(stack, mask, noise)
    assert fake.shape == stack.shape and bool(fmask.all())
    assert torch.equal(fake[:, 0], stack[:, 0])  # the real structural embedding
    # a missing modality's slot never reaches the generator
    garbage = torch.where(mask[..., None], stack, 1e3 * torch.randn_like(stack))
    assert torch.allclose(comat.generate(garbage, mask, noise)[0], fake)
    # the noise does
    assert not torch.allclose(comat.generate(stack, mask)[0][:, 1:], fake[:, 1:])


def test_loss_formulas():
    comat = CoMAT(_native(), hidden_channels=16)
    real = torch.tensor([1.0, 2.0, 3.0])
    fakes = [torch.tensor([0.0, 1.0, -1.0]), torch.tensor([4.0, 4.0, 4.0]),
             torch.tensor([-2.0, 0.0, 2.0])]
    # Eq. 9: sum over the synthetic set of (mean fake - mean real)
    assert torch.isclose(comat.adversarial_loss(real, fakes), torch.tensor(0.0 + 4.0 + 0.0 -
                                                                           3 * 2.0))
    assert torch.isclose(comat.generator_loss(fakes), torch.tensor(-(0.0 + 4.0 + 0.0) / 3))
    comat.gan_loss = 'vanilla'
    sp = torch.nn.functional.softplus
    ref = sum(-torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(f)).mean()
              for f in fakes)
    assert torch.isclose(comat.adversarial_loss(real, fakes), ref, atol=1e-6)
    assert torch.isclose(comat.generator_loss(fakes),
                         sum(sp(-f).mean() for f in fakes) / 3, atol=1e-6)


@pytest.mark.parametrize('discriminator', ['score', 'mlp'])
def test_gradient_penalty_is_the_formula(discriminator):
    # L_gp = mean_b (||d s(x_h, r, x_t) / d x_h[b]||_2 - 1)^2 on interpolates, checked row by
    # row against a plain autograd transcription, and its gradient with respect to the
    # critic's parameters against central finite differences (float64).
    model = _native(torch.float64)
    comat = CoMAT(model, hidden_channels=16, discriminator=discriminator).double()
    h, r, t, _ = _batch(5)
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    fake = (*comat.generate(hs, hm), *comat.generate(ts, tm))
    fake = tuple(x.detach() for x in fake)
    alpha = torch.rand(5, dtype=torch.float64)
    gp = comat.penalty((hs, hm, ts, tm), fake, r, alpha)
    ref = 0.0
    for b in range(5):
        a = alpha[b]
        xh = (a * torch.where(hm[b, :, None], hs[b], fake[0][b]) + (1 - a) * fake[0][b])
        xh = xh.detach().requires_grad_()
        xt = a * torch.where(tm[b, :, None], ts[b], fake[2][b]) + (1 - a) * fake[2][b]
        s = comat.critic(xh[None], fake[1][b:b + 1], r[b:b + 1], xt[None].detach(),
                         fake[3][b:b + 1])
        g, = torch.autograd.grad(s.sum(), xh)
        ref = ref + (g.norm() - 1)**2 / 5
    assert torch.isclose(gp, ref, atol=1e-10)
    assert gp > 0
    # d L_gp / d theta for a critic parameter, by finite differences
    param = (model.rel_emb.weight if discriminator == 'score' else comat.mlp[0].weight)
    grad, = torch.autograd.grad(gp, param)
    idx = (int(r[0]), 1) if discriminator == 'score' else (0, 1)
    eps = 1e-6

    def gp_at(delta):
        with torch.no_grad():
            param[idx] += delta
        hs2, hm2 = model.modality_stack(h)
        ts2, tm2 = model.modality_stack(t)
        out = comat.penalty((hs2, hm2, ts2, tm2), fake, r, alpha).detach()
        with torch.no_grad():
            param[idx] -= delta
        return out

    fd = (gp_at(eps) - gp_at(-eps)) / (2 * eps)
    assert abs(float(grad[idx]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))
    assert grad.abs().sum() > 0


@pytest.mark.parametrize('make', [_native, _tbkgc, _lbmkgc])
def test_critic_and_generator_steps_touch_only_their_parameters(make):
    model = make()
    comat = CoMAT(model, hidden_channels=16, adversarial_weight=0.5)
    critic_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen_opt = torch.optim.SGD(comat.generator_parameters(), lr=0.1)
    seen = {}
    critic_step, gen_step = critic_opt.step, gen_opt.step

    def on_critic_step(*a, **k):
        seen['gen_grads_at_critic'] = [p.grad for p in comat.generator.parameters()]
        seen['critic_grads'] = [None if p.grad is None else p.grad.clone()
                                for p in model.parameters()]
        seen['model_before'] = [p.detach().clone() for p in model.parameters()]
        seen['gen_before'] = [p.detach().clone() for p in comat.generator.parameters()]
        return critic_step(*a, **k)

    def on_gen_step(*a, **k):
        seen['critic_grads_at_gen'] = [p.grad for p in model.parameters()]
        seen['model_at_gen'] = [p.detach().clone() for p in model.parameters()]
        return gen_step(*a, **k)

    critic_opt.step, gen_opt.step = on_critic_step, on_gen_step
    out = comat.train_step(_batch(), critic_opt, gen_opt)
    assert set(out) == {'loss', 'kgc', 'adv', 'gp', 'generator'}
    # the critic step leaves no gradient on the generator (its output is detached) ...
    assert all(g is None for g in seen['gen_grads_at_critic'])
    # ... and the generator step adds none to the critic (or moves it)
    for a, b in zip(seen['critic_grads'], seen['critic_grads_at_gen']):
        assert (a is None and b is None) or torch.equal(a, b)
    after = [p.detach() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(seen['model_before'], after))
    assert all(torch.equal(a, b) for a, b in zip(seen['model_at_gen'], after))
    assert all(not torch.equal(a, b) for a, b in
               zip(seen['gen_before'], comat.generator.parameters()))


def test_adversarial_term_reaches_the_critic():
    # With L_kgc removed (lr on its own would move everything), the critic's adversarial
    # gradient is d/dtheta mu * (mean s_fake - mean s_real) summed over the synthetic set.
    model = _native(torch.float64)
    comat = CoMAT(model, hidden_channels=16, adversarial_weight=1.0,
                  gradient_penalty=0.0).double()
    h, r, t, neg = _batch()
    torch.manual_seed(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    gopt = torch.optim.SGD(comat.generator_parameters(), lr=0.0)
    comat.train_step((h, r, t, neg), opt, gopt)
    got = model.rel_emb.weight.grad.clone()
    # recompute by hand with the same noise
    torch.manual_seed(3)
    model.zero_grad()
    kgc = model.loss(h, r, t, neg)
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    fh = comat.generate(hs, hm, detach=True)
    ft = comat.generate(ts, tm, detach=True)
    real = model.score_stacks(hs, hm, r, ts, tm)
    fakes = [model.score_stacks(fh[0], fh[1], r, ts, tm),
             model.score_stacks(hs, hm, r, ft[0], ft[1]),
             model.score_stacks(fh[0], fh[1], r, ft[0], ft[1])]
    (kgc + sum(f.mean() - real.mean() for f in fakes)).backward()
    assert torch.allclose(got, model.rel_emb.weight.grad, atol=1e-10)


@pytest.mark.parametrize('gan_loss', ['wasserstein', 'vanilla'])
def test_generator_learns_to_raise_fake_scores(gan_loss):
    model = _native()
    comat = CoMAT(model, hidden_channels=32, gan_loss=gan_loss)
    critic_opt = torch.optim.SGD(model.parameters(), lr=0.0)  # frozen critic
    gen_opt = torch.optim.Adam(comat.generator_parameters(), lr=1e-2)
    batch = _batch(16)
    h, r, t, _ = batch

    def fake_score():
        torch.manual_seed(0)
        with torch.no_grad():
            hs, hm = model.modality_stack(h)
            ts, tm = model.modality_stack(t)
            fh = comat.generate(hs, hm)
            return model.score_stacks(fh[0], fh[1], r, ts, tm).mean()

    before = fake_score()
    for _ in range(60):
        comat.train_step(batch, critic_opt, gen_opt)
    assert fake_score() > before + 0.5


def _data():
    return FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4, num_triples=600,
                           modalities={'image': 8, 'text': 6}, seed=1)[0]


@pytest.mark.parametrize('options', [{}, {'discriminator': 'mlp', 'gan_loss': 'vanilla'}])
def test_trainer_with_comat_learns_and_resumes_exactly(tmp_path, options):
    data = _data()
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.01, num_negatives=4, eval_every=2,
                      progress=False, seed=3, checkpoint_every=2, comat=options)

    def model():
        seed_everything(0)
        return NATIVE.from_data(data, 8, margin=2.0)

    full = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'a')).fit()
    first = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'b'))
    first.fit(stop_after_epoch=3)
    torch.manual_seed(999)
    resumed = Trainer(model(), data, cfg, out_dir=str(tmp_path / 'b')).fit(resume=True)
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]
    assert resumed['test']['realistic'] == full['test']['realistic']
    random_mrr = 1 / data[ENTITY].num_nodes * 5
    assert full['test']['realistic']['both']['mrr'] > random_mrr


def test_trainer_comat_with_tbkgc_and_errors():
    data = _data()
    seed_everything(0)
    model = TBKGC.from_data(data, 8)
    res = Trainer(model, data, TrainConfig(epochs=2, batch_size=64, num_negatives=4,
                                           eval_every=2, progress=False,
                                           comat={'hidden_channels': 16})).fit()
    assert res['epochs_trained'] == 2
    with pytest.raises(ValueError, match='negative sampling'):
        Trainer(model, data, TrainConfig(regime='1-n', comat={}, progress=False))
    with pytest.raises(ValueError, match='at least one modality besides the structure'):
        Trainer(RotatE(data[ENTITY].num_nodes, data.num_relations, 4), data,
                TrainConfig(comat={}, progress=False))
    with pytest.raises(ValueError, match='comat must be'):
        TrainConfig(comat='yes')
    assert get_triples(data, 'train')[0].numel() > 0
