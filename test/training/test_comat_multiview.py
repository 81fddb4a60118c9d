r"""CoMAT on the multi-view models (NATIVE's Fig. 4: CoMAT on IKRL, TBKGC and VBKGC): their
stacks are [e_s, W_1 x_1, ...] and their scores sum TransE terms over the views
(structure, sum of the modalities), which CoMAT scores through ``score_stacks``."""
import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import IKRL, MODELS, TBKGC, VBKGC
from torch_mmkg.training import CoMAT, TrainConfig, Trainer, seed_everything

N, R, D = 20, 3, 4


@pytest.mark.parametrize('cls, train', [(IKRL, {}), (TBKGC, {}), (VBKGC, {'twins': True}),
                                        (IKRL, {'twins': True})])
@pytest.mark.parametrize('comat', [{}, {'penalty_mode': 'through_fusion'},
                                   {'discriminator': 'mlp', 'gan_loss': 'vanilla'}])
def test_one_comat_epoch_trains_model_and_generator(cls, train, comat):
    data = FakeMMKGDataset(num_entities=30, num_relations=3, num_clusters=4, num_triples=150,
                           modalities={'image': 8, 'text': 6}, seed=1)[0]
    seed_everything(0)
    model = cls.from_data(data, 8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(epochs=1, batch_size=64, num_negatives=4, eval_every=1, progress=False,
                      test=False, comat=dict(hidden_channels=16, adversarial_weight=0.1,
                                             **comat), **train)
    trainer = Trainer(model, data, cfg)
    gen = [p.detach().clone() for p in trainer.comat.generator_parameters()]
    res = trainer.fit()
    assert res['epochs_trained'] == 1
    assert all(v == v for v in res['history'][0]['val'].values())  # no NaN
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    moved = [not torch.equal(a, b) for a, b in zip(gen, trainer.comat.generator_parameters())]
    # the authors never step the generator of the MLP-critic ablation
    assert all(moved) if comat.get('discriminator') != 'mlp' else not any(moved)


def test_comat_losses_on_ikrl_are_the_formulas():
    # IKRL: views (e_s, e_i = sum of the present modalities' W_m x_m), score
    # -(|h_s + r - t_s| + |h_i + r - t_i| + |h_s + r - t_i| + |h_i + r - t_s|) (L1). CoMAT:
    # synthetic entity [e_s, G(z | e_s | e_1 | e_2)] (missing rows as zeros in G's input),
    # L_adv = sum_j (mean s_j - mean s+), and the authors' penalty on interpolates of the
    # detached views, gradient w.r.t. the head's, L_gp = mean (||grad||_2 - 1)^2.
    torch.manual_seed(0)
    feats = {'image': torch.randn(N, 6), 'text': torch.randn(N, 3)}
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 2 == 0}
    model = IKRL(N, R, D, feats, masks).double()
    comat = CoMAT(model, hidden_channels=16, adversarial_weight=0.3).double()
    g = torch.Generator().manual_seed(1)
    B = 6
    h, r, t = (torch.randint(0, N, (B, ), generator=g), torch.randint(0, R, (B, ), generator=g),
               torch.randint(0, N, (B, ), generator=g))
    neg = NegativeSampler(N, 3, generator=g)(h, r, t)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    gopt = torch.optim.SGD(comat.generator_parameters(), lr=0.0)
    torch.manual_seed(7)
    out = comat.train_step((h, r, t, neg), opt, gopt)

    torch.manual_seed(7)
    with torch.no_grad():
        kgc = model.loss(h, r, t, neg)
        hs, hm = model.modality_stack(h)
        ts, tm = model.modality_stack(t)
    lin1, act, lin2 = comat.generator

    def synth(stack, mask):
        z = torch.randn(B, 64, dtype=torch.float64)
        rows = []
        for b in range(B):
            real = torch.cat([stack[b, s] if mask[b, s] else torch.zeros(D, dtype=torch.float64)
                              for s in range(3)])
            x = lin1.weight @ torch.cat([z[b], real]) + lin1.bias
            x = torch.where(x > 0, x, act.negative_slope * x)
            y = lin2.weight @ x + lin2.bias
            rows.append([stack[b, 0], y[:D], y[D:]])
        return rows

    def views(slots, present):
        e_i = sum((s for s, p in zip(slots[1:], present[1:]) if p),
                  torch.zeros(D, dtype=torch.float64))
        return slots[0], e_i

    def score(hv, rel, tv):
        (h_s, h_i), (t_s, t_i) = hv, tv
        return -sum(float((a + rel - c).abs().sum())
                    for a, c in ((h_s, t_s), (h_i, t_i), (h_s, t_i), (h_i, t_s)))

    with torch.no_grad():
        fh, ft = synth(hs, hm), synth(ts, tm)
        rel = model.rel_emb.weight[r]
        real_h = [views(list(hs[b]), list(hm[b])) for b in range(B)]
        real_t = [views(list(ts[b]), list(tm[b])) for b in range(B)]
        fake_h = [views(fh[b], [True] * 3) for b in range(B)]
        fake_t = [views(ft[b], [True] * 3) for b in range(B)]
        pos = [score(real_h[b], rel[b], real_t[b]) for b in range(B)]
        assert max(abs(p - float(s)) for p, s in zip(pos, model(h, r, t))) < 1e-10
        fakes = [[score(fake_h[b], rel[b], real_t[b]) for b in range(B)],
                 [score(real_h[b], rel[b], fake_t[b]) for b in range(B)],
                 [score(fake_h[b], rel[b], fake_t[b]) for b in range(B)]]
        adv = sum(sum(f) / B - sum(pos) / B for f in fakes)
        alpha = torch.rand(B, dtype=torch.float64)
        gp = 0.0
        for b in range(B):
            a = float(alpha[b])
            xs, xi = (a * u + (1 - a) * v for u, v in zip(real_h[b], fake_h[b]))
            ys, yi = (a * u + (1 - a) * v for u, v in zip(real_t[b], fake_t[b]))
            grad_s = -(torch.sign(xs + rel[b] - ys) + torch.sign(xs + rel[b] - yi))
            grad_i = -(torch.sign(xi + rel[b] - yi) + torch.sign(xi + rel[b] - ys))
            norm = float(torch.cat([grad_s, grad_i]).norm())
            gp += (norm - 1)**2 / B
        # the generator step, on fresh noise (the critic did not move: lr 0):
        # L_G = -mean over the synthetic set of the mean synthetic score
        fh, ft = synth(hs, hm), synth(ts, tm)
        fake_h = [views(fh[b], [True] * 3) for b in range(B)]
        fake_t = [views(ft[b], [True] * 3) for b in range(B)]
        loss_g = -sum(sum(score(x, rel[b], y) for b, (x, y) in enumerate(zip(hh, tt))) / B
                      for hh, tt in ((fake_h, real_t), (real_h, fake_t), (fake_h, fake_t))) / 3
    assert abs(float(out['adv']) - adv) < 1e-9
    assert abs(float(out['gp']) - gp) < 1e-9
    assert abs(float(out['kgc']) - float(kgc)) < 1e-12
    assert abs(float(out['loss']) - (float(kgc) + 0.3 * (adv + 0.1 * gp))) < 1e-9
    assert abs(float(out['generator']) - loss_g) < 1e-9


@pytest.mark.parametrize('name', ['ikrl', 'tbkgc', 'vbkgc', 'native', 'adamf', 'lbmkgc',
                                  'mmkrl', 'momok', 'imf', 'mose'])
def test_score_stacks_is_forward(name):
    # the stacks CoMAT and MAT score synthetic entities through give the model's own scores,
    # with entities lacking modalities (ensembles judge the views by the masks)
    data = FakeMMKGDataset(num_entities=30, num_relations=3, num_clusters=4, num_triples=150,
                           modalities={'image': 8, 'text': 6}, seed=1)[0]
    seed_everything(0)
    model = MODELS[name].from_data(data, 8).double().eval()
    h, r, t = torch.arange(12), torch.arange(12) % 3, (torch.arange(12) * 7) % 30
    hs, hm = model.modality_stack(h)
    ts, tm = model.modality_stack(t)
    assert (~hm).any() or (~tm).any()
    with torch.no_grad():
        assert torch.allclose(model.score_stacks(hs, hm, r, ts, tm), model(h, r, t),
                              atol=1e-10)
