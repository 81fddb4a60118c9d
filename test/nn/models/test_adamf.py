import math

import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import AdaMF, NATIVE
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.testing import assert_scoring_consistent, planted_mrr_gain

N, R, d = 20, 3, 4


def make(**kwargs):
    torch.manual_seed(0)
    feats = {'image': torch.randn(N, 6), 'text': torch.randn(N, 5)}
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 2 == 0}
    return AdaMF(N, R, d, feats, masks, **kwargs), feats, masks


def triples(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


def _perturb(model):
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def naive_joint(model, e, mask_missing=True):
    r"""S_e = [e_s, W_v x_v + b_v, W_t x_t + b_t]; alpha = softmax_m(w^T tanh S_e[m]) over
    the present slots; e_hat = sum_m alpha_m S_e[m], written out per coordinate."""
    rep = model.representation
    slots, present = [rep.node_emb.weight[e].tolist()], [True]
    for m in rep.modalities:
        x = getattr(rep, f'x_{m}')[e].tolist()
        lin = rep.projection.mlps[m][0]
        W, b = lin.weight.tolist(), lin.bias.tolist()
        slots.append([sum(W[i][j] * x[j] for j in range(len(x))) + b[i]
                      for i in range(len(b))])
        present.append(bool(getattr(rep, f'mask_{m}')[e]) or not mask_missing)
    w = model.fusion.v.tolist()
    logits = [sum(wk * math.tanh(sk) for wk, sk in zip(w, s)) for s in slots]
    top = max(a for a, p in zip(logits, present) if p)
    ex = [math.exp(a - top) if p else 0.0 for a, p in zip(logits, present)]
    alpha = [x / sum(ex) for x in ex]
    return [sum(alpha[m] * slots[m][k] for m in range(len(slots)))
            for k in range(len(slots[0]))], alpha


def naive_score(model, h, r, t, mask_missing=True, margin=12.0, epsilon=2.0):
    r"""gamma - sum_k |h_k e^{i theta_k} - t_k|, theta = pi r / rho_r, rho_r = (gamma + eps) / d,
    complex coordinates (re_k, im_k) = (x_k, x_{d + k})."""
    hj, tj = naive_joint(model, h, mask_missing)[0], naive_joint(model, t, mask_missing)[0]
    rho_r = (margin + epsilon) / d
    dist = 0.0
    for k in range(d):
        theta = math.pi * float(model.rel_emb.weight.detach()[r, k]) / rho_r
        z = complex(hj[k], hj[d + k]) * complex(math.cos(theta), math.sin(theta))
        dist += abs(z - complex(tj[k], tj[d + k]))
    return margin - dist


def test_is_natives_pipeline_with_adamfs_parts():
    model, feats, _ = make()
    assert isinstance(model, NATIVE)
    # no relation temperature: the weights are relation-free
    assert model.fusion.zeta is None and not model.fusion.relation_dependent
    # one Linear(F_m, 2d) per modality, with bias
    for m, x in feats.items():
        (lin, ) = list(model.representation.projection.mlps[m])
        assert isinstance(lin, torch.nn.Linear) and lin.bias is not None
        assert (lin.in_features, lin.out_features) == (x.size(1), 2 * d)
    # trainable feature tables, initialised from the features
    names = dict(model.named_parameters())
    for m, x in feats.items():
        assert torch.equal(names[f'representation.x_{m}'].detach(), x)
    assert model.regularization_weight == 0.0
    assert isinstance(model.loss_fn, SelfAdversarialLoss) and model.loss_fn.temperature == 2.0
    # the authors' ranges: e_s in +-(gamma + eps) / (2d), r in +-(gamma + eps) / d
    assert model.node_emb.weight.abs().max() <= 14.0 / (2 * d)
    assert model.node_emb.weight.abs().max() > 0.8 * 14.0 / (2 * d)
    assert model.rel_emb.weight.abs().max() <= 14.0 / d
    assert model.relation_range == 14.0 / d
    frozen = make(trainable_features=False)[0]
    assert not any(n.startswith('representation.x_') for n, _ in frozen.named_parameters())


@pytest.mark.parametrize('mask_missing', [True, False])
def test_fusion_and_score_are_the_formulas(mask_missing):
    model = make(mask_missing=mask_missing)[0].double().eval()
    _perturb(model)
    h, r, t = triples(10, seed=2)
    with torch.no_grad():
        joint = model.joint(h, r)
        stack, mask = model.modality_stack(h)
        _, weights = model.fusion(stack, mask)
        score = model(h, r, t)
    for b in range(10):
        want, alpha = naive_joint(model, int(h[b]), mask_missing)
        assert torch.allclose(joint[b], torch.tensor(want, dtype=joint.dtype), atol=1e-10)
        assert torch.allclose(weights[b], torch.tensor(alpha, dtype=joint.dtype), atol=1e-10)
        want = naive_score(model, int(h[b]), int(r[b]), int(t[b]), mask_missing)
        assert abs(float(score[b]) - want) < 1e-9
    # the relation does not enter the fusion
    assert torch.allclose(model.joint(h, torch.zeros_like(r)), model.joint(h, r))


def test_loss_is_the_self_adversarial_sigmoid_loss():
    # L = mean_b -1/2 (log s(s+) + sum_i p_i log s(-s-_i)), p = softmax(2 s-), no penalty
    model = make()[0].double()
    _perturb(model)
    h, r, t = triples(6, seed=3)
    neg = NegativeSampler(N, 5, generator=torch.Generator().manual_seed(3))(h, r, t)
    loss = model.loss(h, r, t, neg)
    want = 0.0
    for b in range(6):
        pos = naive_score(model, int(h[b]), int(r[b]), int(t[b]))
        negs = []
        for i in range(5):
            c = int(neg.index[b, i])
            side = bool(neg.corrupt_head[b] if neg.corrupt_head.dim() == 1
                        else neg.corrupt_head[b, i])
            hh, tt = (c, int(t[b])) if side else (int(h[b]), c)
            negs.append(naive_score(model, hh, int(r[b]), tt))
        top = max(negs)
        ex = [math.exp(2.0 * (s - top)) for s in negs]
        p = [x / sum(ex) for x in ex]

        def logsig(x):
            return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))

        want += -0.5 * (logsig(pos) + sum(pi * logsig(-s) for pi, s in zip(p, negs))) / 6
    assert abs(float(loss) - want) < 1e-9
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_scoring_paths_agree():
    model = make()[0].eval()
    h, r, t = triples()
    assert_scoring_consistent(model, h, r, t)


def test_missing_features_never_enter_the_score():
    model, _, masks = make()
    model.eval()
    h, r, t = triples(12)
    before = model(h, r, t).detach()
    with torch.no_grad():
        model.representation.x_text[~masks['text']] = 1e3
    assert torch.allclose(model(h, r, t), before, atol=1e-5)
    plain = make(mask_missing=False)[0].eval()
    before = plain(h, r, t).detach()
    with torch.no_grad():
        plain.representation.x_text[~masks['text']] += 5.0
    assert not torch.allclose(plain(h, r, t), before, atol=1e-3)


def test_any_number_of_modalities():
    g = torch.Generator().manual_seed(0)
    for M in (1, 4):
        feats = {f'm{i}': torch.randn(N, 3 + i, generator=g) for i in range(M)}
        model = AdaMF(N, R, d, feats)
        stack, mask = model.modality_stack()
        assert stack.shape == (N, M + 1, 2 * d) and bool(mask.all())
        h, r, t = triples()
        model.loss(h, r, t, NegativeSampler(N, 3)(h, r, t)).backward()


def test_bad_input():
    with pytest.raises(ValueError, match='AdaMF needs at least one modality'):
        AdaMF(N, R, d, {})
    with pytest.raises(ValueError, match='margin'):
        make(margin=float('nan'))
    with pytest.raises(ValueError, match='adversarial_temperature'):
        make(adversarial_temperature=-1.0)
    with pytest.raises(ValueError, match='projection_layers'):
        make(projection_layers=3)
    with pytest.raises(ValueError, match='trainable_features'):
        make(trainable_features='yes')
    with pytest.raises(ValueError, match='init'):
        make(init='xavier')
    with pytest.raises(ValueError, match='hidden_channels'):
        AdaMF(N, R, 0, {'text': torch.randn(N, 2)})
    with pytest.raises(ValueError, match="'text' contain NaN"):
        AdaMF(N, R, d, {'text': torch.full((N, 2), float('nan'))})


def test_from_data_and_state_dict_round_trip():
    data = FakeMMKGDataset(num_entities=20, num_relations=2, num_triples=60,
                           modalities={'image': 4, 'text': 3}, seed=0)[0]
    model = AdaMF.from_data(data, 4, modalities=['text'])
    assert model.modalities == ['text']
    other = AdaMF.from_data(data, 4, modalities=['text'])
    other.load_state_dict(model.state_dict())
    h, r, t = torch.arange(5), torch.zeros(5, dtype=torch.long), torch.arange(5, 10)
    assert torch.equal(model(h, r, t), other(h, r, t))


def test_learns_planted_signal(single_thread):
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4,
                           num_triples=600, modalities={'image': 8, 'text': 6}, seed=1)[0]
    torch.manual_seed(0)
    model = AdaMF.from_data(data, 8, margin=2.0)
    before, after = planted_mrr_gain(model, data)
    assert after > before + 0.1
