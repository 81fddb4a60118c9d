import math

import pytest
import torch

from torch_mmkg.data import ENTITY, get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import LBMKGC, NATIVE, TBKGC, RotatE
from torch_mmkg.testing import assert_resumes_exactly
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
    with pytest.raises(ValueError, match='penalty_mode'):
        CoMAT(_native(), penalty_mode='paper')
    with pytest.raises(ValueError, match='adversarial_reduction'):
        CoMAT(_native(), adversarial_reduction='max')
    # the authors' MLP critic reads joint embeddings as wide as a slot
    with pytest.raises(ValueError, match="discriminator='mlp' scores joint embeddings"):
        CoMAT(_native(fusion='concat'), discriminator='mlp')


def test_generator_is_the_authors():
    # Linear(64 + S*D, 512) -> LeakyReLU (PyTorch's default slope, as the authors') ->
    # Linear(512, M*D); torch_mmkg's earlier slope is a switch
    comat = CoMAT(_native())
    lin1, act, lin2 = comat.generator
    assert (lin1.in_features, lin1.out_features) == (64 + 3 * 8, 512)
    assert (lin2.in_features, lin2.out_features) == (512, 2 * 8)
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.01
    assert CoMAT(_native(), negative_slope=0.2).generator[1].negative_slope == 0.2


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
    # Eq. 9 as printed: the mean over the synthetic set (the authors' code sums)
    mean = CoMAT(_native(), hidden_channels=16, adversarial_reduction='mean')
    assert torch.isclose(mean.adversarial_loss(real, fakes), torch.tensor(-2.0 / 3))
    # one real score per synthetic one (the MLP critic's heads and tails)
    assert torch.isclose(comat.adversarial_loss([real, 2 * real], fakes[:2]),
                         torch.tensor(0.0 - 2.0 + 4.0 - 4.0))
    comat.gan_loss = 'vanilla'
    sp = torch.nn.functional.softplus
    ref = sum(-torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(f)).mean()
              for f in fakes)
    assert torch.isclose(comat.adversarial_loss(real, fakes), ref, atol=1e-6)
    assert torch.isclose(comat.generator_loss(fakes),
                         sum(sp(-f).mean() for f in fakes) / 3, atol=1e-6)


@pytest.mark.parametrize('discriminator', ['score', 'triple_mlp'])
def test_gradient_penalty_through_fusion_is_the_formula(discriminator):
    # torch_mmkg's earlier penalty: L_gp = mean_b (||d s(x_h, r, x_t) / d x_h[b]||_2 - 1)^2
    # on interpolates of the stacks, checked row by row against a plain autograd
    # transcription, and its gradient with respect to the critic's parameters against
    # central finite differences (float64).
    model = _native(torch.float64)
    comat = CoMAT(model, hidden_channels=16, discriminator=discriminator,
                  penalty_mode='through_fusion').double()
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


def test_authors_gradient_penalty_trains_nothing():
    # The authors' penalty: interpolates of the detached joint embeddings (h, r, t) of the
    # real triple and of (h*, r, t*), scored by RotatE alone, gradient w.r.t. the head
    # interpolate. Transcribed row by row: ReDAF, then the complex gradient of
    # -sum_k |x_h,k e^{i theta_k} - x_t,k|, which is -(z_k / |z_k|) e^{-i theta_k}: of
    # modulus 1 per coordinate, so the penalty is the constant (sqrt(d) - 1)^2.
    model = _native(torch.float64)
    comat = CoMAT(model, hidden_channels=16).double()
    h, r, t, _ = _batch(5)
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    fake = (*comat.generate(hs, hm), *comat.generate(ts, tm))
    alpha = torch.rand(5, dtype=torch.float64)
    gp = comat.penalty((hs, hm, ts, tm), fake, r, alpha)
    v, zeta = model.fusion.v.detach(), model.fusion.zeta.detach()
    rho_r = (3.0 + 2.0) / 4  # (gamma + epsilon) / d of the relation phases

    def redaf(stack, mask, rel):
        stack = stack.detach()
        logits = torch.tanh(stack) @ v / torch.sigmoid(zeta[rel])
        w = torch.softmax(logits.masked_fill(~mask, float('-inf')), dim=0)
        return (w[:, None] * stack).sum(0)

    ref, d = 0.0, 4
    for b in range(5):
        a = float(alpha[b])
        xh = (a * redaf(hs[b], hm[b], r[b]) + (1 - a) * redaf(fake[0][b], fake[1][b], r[b]))
        xt = (a * redaf(ts[b], tm[b], r[b]) + (1 - a) * redaf(fake[2][b], fake[3][b], r[b]))
        squared = 0.0
        for k in range(d):
            theta = math.pi * float(model.rel_emb.weight[r[b], k].detach()) / rho_r
            rot = complex(math.cos(theta), math.sin(theta))
            z = complex(xh[k], xh[d + k]) * rot - complex(xt[k], xt[d + k])
            squared += abs(-(z / abs(z)) / rot)**2
        ref += (math.sqrt(squared) - 1)**2 / 5
    assert abs(gp.item() - ref) < 1e-9
    assert abs(gp.item() - (math.sqrt(d) - 1)**2) < 1e-9
    # no parameter of the model (or of the generator) receives a gradient from it
    params = list(model.parameters()) + list(comat.generator_parameters())
    grads = torch.autograd.grad(gp, params, allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    # a whole critic step: the penalty's term moves nothing
    batch = _batch(6)

    def critic_grads(beta):
        comat.gradient_penalty = beta
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        gopt = torch.optim.SGD(comat.generator_parameters(), lr=0.0)
        torch.manual_seed(4)
        comat.train_step(batch, opt, gopt)
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(critic_grads(0.1), critic_grads(0.0)):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize('kwargs', [{}, {'critic_through_generator': False}])
def test_adversarial_term_reaches_the_critic(kwargs):
    # With L_kgc removed (lr on its own would move everything), the critic's adversarial
    # gradient is d/dtheta mu * (mean s_fake - mean s_real) summed over the synthetic set;
    # by default (the authors' code) the synthetic entities are generated from the real
    # representations without detaching them, so the gradient also reaches the projections
    # and the structural embeddings through the generator's input.
    through = kwargs.get('critic_through_generator', True)
    model = _native(torch.float64)
    comat = CoMAT(model, hidden_channels=16, adversarial_weight=1.0, gradient_penalty=0.0,
                  **kwargs).double()
    h, r, t, neg = _batch()
    torch.manual_seed(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    gopt = torch.optim.SGD(comat.generator_parameters(), lr=0.0)
    comat.train_step((h, r, t, neg), opt, gopt)
    got = [p.grad.clone() for p in model.parameters()]

    def generate(stack, mask, detach):
        # G([z | e_S | P_1 x_1 | ...]) with missing rows as zeros, after the real e_S
        real = torch.where(mask[..., None], stack, torch.zeros_like(stack)).flatten(1)
        real = real.detach() if detach else real
        z = torch.randn(real.size(0), 64, dtype=real.dtype)
        out = comat.generator(torch.cat([z, real], dim=1)).view(real.size(0), 2, 8)
        out = out.detach() if detach else out
        return torch.cat([stack[:, :1], out], dim=1), torch.ones_like(mask)

    def by_hand(through_generator):
        # recompute with the same noise
        torch.manual_seed(3)
        model.zero_grad()
        kgc = model.loss(h, r, t, neg)
        hs, hm = model.modality_stack(h)
        ts, tm = model.modality_stack(t)
        fh = generate(hs, hm, not through_generator)
        ft = generate(ts, tm, not through_generator)
        real = model.score_stacks(hs, hm, r, ts, tm)
        fakes = [model.score_stacks(fh[0], fh[1], r, ts, tm),
                 model.score_stacks(hs, hm, r, ft[0], ft[1]),
                 model.score_stacks(fh[0], fh[1], r, ft[0], ft[1])]
        (kgc + sum(f.mean() - real.mean() for f in fakes)).backward()
        return [p.grad.clone() for p in model.parameters()]

    want = by_hand(through)
    for (name, _), a, b in zip(model.named_parameters(), got, want):
        assert torch.allclose(a, b, atol=1e-10), name
    # the two steps differ on the projections, which reach the generator's input
    other = by_hand(not through)
    names = [n for n, _ in model.named_parameters()]
    proj = names.index('representation.projection.mlps.text.0.weight')
    assert not torch.allclose(want[proj], other[proj], atol=1e-6)


def test_mask_missing_false_treats_no_row_as_missing():
    # NATIVE(mask_missing=False) is the paper's model: under CoMAT too, every stored row is
    # an input of the generator and of the penalty, as if every modality were present.
    model = _native(torch.float64, mask_missing=False)
    comat = CoMAT(model, hidden_channels=16).double()
    index = torch.arange(N)
    stack, mask = model.modality_stack(index)
    assert (~mask).any()
    ones = torch.ones_like(mask)
    noise = torch.randn(N, comat.noise_channels, dtype=torch.float64)
    fake = comat.generate(stack, mask, noise)[0]
    assert torch.equal(fake, comat.generate(stack, ones, noise)[0])
    garbage = torch.where(mask[..., None], stack, 1e3 * torch.randn_like(stack))
    moved = (comat.generate(garbage, mask, noise)[0] - fake)[:, 1:].abs().sum(dim=(1, 2))
    assert bool((moved[(~mask).any(dim=1)] > 0).all())  # missing rows reach the generator
    assert not comat.mask_missing and CoMAT(_native()).mask_missing
    comat = CoMAT(model, hidden_channels=16, penalty_mode='through_fusion').double()
    # the penalty interpolates the stored rows, never the synthetic ones in their place
    h, r, t, _ = _batch(5)
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    assert (~hm).any() or (~tm).any()
    fake = tuple(x.detach() for x in (*comat.generate(hs, hm), *comat.generate(ts, tm)))
    alpha = torch.rand(5, dtype=torch.float64)
    gp = comat.penalty((hs, hm, ts, tm), fake, r, alpha)
    assert torch.equal(gp, comat.penalty((hs, torch.ones_like(hm), ts, torch.ones_like(tm)),
                                         fake, r, alpha))
    masked = CoMAT(model, hidden_channels=16, penalty_mode='through_fusion',
                   mask_missing=True).double()
    assert not torch.isclose(gp, masked.penalty((hs, hm, ts, tm), fake, r, alpha))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gopt = torch.optim.SGD(comat.generator_parameters(), lr=0.01)
    out = comat.train_step(_batch(), opt, gopt)
    assert all(torch.isfinite(v) for v in out.values())


def test_mlp_discriminator_is_the_authors():
    # "w/ MLP as D" as the authors ran it: an MLP(D -> D -> 1) of the mean of an entity's
    # slots, real against synthetic, for heads and tails; its penalty on interpolates of
    # the real joint embedding and the synthetic entity's critic score; no generator step.
    model = _native(torch.float64)
    comat = CoMAT(model, hidden_channels=16, discriminator='mlp', adversarial_weight=1.0,
                  generator_lr=0.1).double()
    lin1, act, lin2 = comat.mlp
    assert (lin1.in_features, lin1.out_features, lin2.out_features) == (8, 8, 1)
    assert isinstance(act, torch.nn.ReLU)
    assert len(list(comat.critic_parameters())) == 4
    h, r, t, neg = _batch(6)
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    fake = tuple(x.detach() for x in (*comat.generate(hs, hm), *comat.generate(ts, tm)))
    W1, b1, W2 = lin1.weight.detach(), lin1.bias.detach(), lin2.weight.detach().view(-1)

    def mlp(x):
        return float(W2 @ torch.relu(W1 @ x.detach() + b1) + lin2.bias.detach())

    def slot_mean(stack, mask):
        return stack[mask].mean(0)

    # the critic of an entity
    got = comat.entity_critic(hs, hm).detach()
    for b in range(6):
        assert abs(float(got[b]) - mlp(slot_mean(hs[b], hm[b]))) < 1e-10
    # its penalty, transcribed with the MLP's gradient W1^T (relu'(W1 x + b1) * w2)
    alpha = torch.rand(6, dtype=torch.float64)
    gp = comat.penalty((hs, hm, ts, tm), fake, r, alpha)
    ref = 0.0
    for stack, mask, fs, fm in ((hs, hm, fake[0], fake[1]), (ts, tm, fake[2], fake[3])):
        joint = model.fuse(stack, mask, r).detach()
        for b in range(6):
            a = float(alpha[b])
            x = a * joint[b] + (1 - a) * mlp(slot_mean(fs[b], fm[b]))
            g = W1.t() @ ((W1 @ x + b1 > 0).to(x.dtype) * W2)
            ref += (float(g.norm()) - 1)**2 / 6
    assert abs(gp.item() - ref) < 1e-9
    grads = torch.autograd.grad(gp, list(model.parameters()) + [lin1.weight],
                                allow_unused=True)
    assert all(g is None or not g.any() for g in grads[:-1]) and grads[-1].abs().sum() > 0
    # the step: the adversarial term is sum over heads and tails of mean D(e*) - mean D(e)
    opt = torch.optim.SGD(list(model.parameters()) + list(comat.critic_parameters()), lr=0.0)
    gopt = torch.optim.SGD(comat.generator_parameters(), lr=0.1)
    before = [p.detach().clone() for p in comat.generator.parameters()]
    torch.manual_seed(5)
    out = comat.train_step((h, r, t, neg), opt, gopt)
    torch.manual_seed(5)
    model.loss(h, r, t, neg)
    fh, ft = comat.generate(hs, hm), comat.generate(ts, tm)
    adv = sum(sum(mlp(slot_mean(f[0][b], f[1][b])) - mlp(slot_mean(s[b], m[b]))
                  for b in range(6)) / 6 for s, m, f in ((hs, hm, fh), (ts, tm, ft)))
    assert abs(float(out['adv']) - adv) < 1e-9
    assert lin1.weight.grad is not None and lin1.weight.grad.abs().sum() > 0
    # the generator is never stepped
    assert all(torch.equal(a, b) for a, b in zip(before, comat.generator.parameters()))


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
    # the synthetic triples' distance gamma - s (gamma = 3) shrinks by a tenth at least
    assert 3.0 - fake_score() < 0.9 * (3.0 - before)


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

    full = assert_resumes_exactly(model, data, cfg, str(tmp_path), stop_after_epoch=3)
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
