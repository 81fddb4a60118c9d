r"""IMF: naive transcriptions of the interactive (Mutan) fusion, the per-modality TuckER
scores and their decision fusion (equal and learned weights), the loss (sum of smoothed BCEs,
plus the fused view's BCE with learned weights) and the code's contrastive loss."""
import math

import pytest
import torch

from torch_mmkg.nn import IMF
from torch_mmkg.nn.models.imf import imf_contrastive_loss

N, R, D = 10, 2, 3


def _model(seed=0, **kwargs):
    gen = torch.Generator().manual_seed(5)
    feats = {'image': torch.randn(N, 4, generator=gen), 'text': torch.randn(N, 6, generator=gen)}
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 4 != 1}
    torch.manual_seed(seed)
    model = IMF(N, R, D, feats, masks, **kwargs).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # batch-norm statistics and affine parts away from the identity
        for name, buf in model.named_buffers():
            if name.endswith('running_mean'):
                buf.copy_(0.3 * torch.randn(buf.shape, generator=gen, dtype=buf.dtype))
            elif name.endswith('running_var'):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen, dtype=buf.dtype))
        for name, p in model.named_parameters():
            if '.bn' in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        if model.interaction.decision_logits is not None:
            model.interaction.decision_logits.copy_(torch.tensor([0.3, -0.7, 1.1, 0.2]))
    return model.eval()


def _relu(x):
    return max(0.0, x)


def _mutan(fusion, rows, present):
    r"""ReLU(sum_k prod_{m present} ReLU(W_mk e_m + b_mk)), one entity."""
    W, b = fusion.weight.tolist(), fusion.bias.tolist()
    K, S, d = len(W), len(W[0]), len(W[0][0])
    out = [0.0] * d
    for k in range(K):
        prod = [1.0] * d
        for s in range(S):
            if present[s]:
                for o in range(d):
                    prod[o] *= _relu(sum(rows[s][i] * W[k][s][i][o] for i in range(d)) +
                                     b[k][s][o])
        out = [a + c for a, c in zip(out, prod)]
    return [_relu(x) for x in out]


def _bn(bn, x):
    return [(v - float(m)) / math.sqrt(float(var) + bn.eps) * float(w) + float(c)
            for v, m, var, w, c in zip(x, bn.running_mean, bn.running_var, bn.weight, bn.bias)]


def _tucker(scorer, h, r, t):
    r"""W x_1 bn0(h) x_2 r, then bn1, dotted with t (evaluation mode)."""
    x = _bn(scorer.bn0, h)
    core = scorer.core.tolist()
    d, dr = len(core), len(core[0])
    q = [sum(x[i] * core[i][j][k] * r[j] for i in range(d) for j in range(dr))
         for k in range(d)]
    q = _bn(scorer.bn1, q)
    return sum(a * c for a, c in zip(q, t))


def _views(model, e):
    stack, mask = model.representation(torch.tensor([e]))
    return stack[0].tolist(), mask[0].tolist()


def _logits(model, h, r, t):
    r"""Per scorer: (judged, logit) of (h, r, t)."""
    hs, hm = _views(model, h)
    ts, tm = _views(model, t)
    rs = model.relation(torch.tensor(r)).tolist()
    out = []
    for i, s in enumerate(model.slots):
        judged = bool(hm[i] and tm[i])
        out.append((judged, _tucker(model.interaction.scorers[s], hs[i], rs[i], ts[i])))
    hj = _mutan(model.entity_fusion, hs, hm if model.mask_missing else [True] * len(hm))
    tj = _mutan(model.entity_fusion, ts, tm if model.mask_missing else [True] * len(tm))
    rj = _mutan(model.relation_fusion, rs, [True] * len(rs))
    out.append((True, _tucker(model.interaction.scorers['joint'], hj, rj, tj)))
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize('kwargs', [{}, dict(mask_missing=False), dict(decision='learned'),
                                    dict(relation_channels=4, num_heads=3)])
def test_scores_are_the_decision_fusion_of_tucker_probabilities(kwargs):
    model = _model(**kwargs)
    h = torch.tensor([0, 1, 3, 4, 7])
    r = torch.tensor([0, 3, 1, 2, 0])
    t = torch.tensor([5, 2, 9, 0, 3])
    with torch.no_grad():
        got = model(h, r, t)
    omega = model.decision_weights().tolist()
    for b in range(h.numel()):
        parts = _logits(model, int(h[b]), int(r[b]), int(t[b]))
        num = sum(w * _sigmoid(x) for w, (j, x) in zip(omega, parts) if j)
        den = sum(w for w, (j, _) in zip(omega, parts) if j)
        assert abs(float(got[b]) - (num / den - 1.0)) < 1e-10


@pytest.mark.parametrize('decision', ['mean', 'learned'])
def test_loss_is_the_sum_of_smoothed_bces(decision):
    r"""sum_m BCE(p_m, 0.9 y + 1/N) (the authors' smoothing, BCELoss's), plus the fused
    prediction's BCE where the decision weights are learned."""
    model = _model(mask_missing=False, decision=decision)
    e, r = torch.tensor([2, 6]), torch.tensor([1, 2])
    target = torch.zeros(2, N, dtype=torch.float64)
    target[0, [1, 4]] = 1
    target[1, 8] = 1
    with torch.no_grad():
        got = float(model.loss_1n(e, r, target))
    omega = model.decision_weights().tolist()
    S = len(model.scorers)
    totals = [0.0] * (S + 1)
    for b in range(2):
        for n in range(N):
            y = 0.9 * float(target[b, n]) + 1.0 / N
            parts = _logits(model, int(e[b]), int(r[b]), n)
            probs = [_sigmoid(x) for _, x in parts]
            for m, p in enumerate(probs):
                totals[m] -= (y * math.log(p) + (1 - y) * math.log(1 - p)) / (2 * N)
            p = sum(w * q for w, q in zip(omega, probs)) / sum(omega)
            totals[S] -= (y * math.log(p) + (1 - y) * math.log(1 - p)) / (2 * N)
    want = sum(totals[:S]) + (totals[S] if decision == 'learned' else 0.0)
    assert abs(got - want) < 1e-9


def test_mutan_skips_a_missing_modality():
    masked, unmasked = _model(), _model(mask_missing=False)
    e = 3  # lacks the image
    for model in (masked, unmasked):
        stack, mask = _views(model, e)
        assert not model.representation.mask('image')[e] or not model.mask_missing
        want = _mutan(model.entity_fusion, stack,
                      mask if model.mask_missing else [True] * len(stack))
        with torch.no_grad():
            got = model.joint(*model.representation(torch.tensor([e])))[0]
        assert torch.allclose(got, torch.tensor(want, dtype=got.dtype), atol=1e-12)
    with torch.no_grad():
        a = masked.joint(*masked.representation(torch.tensor([e])))
        b = unmasked.joint(*unmasked.representation(torch.tensor([e])))
    assert not torch.allclose(a, b)


def test_contrastive_loss_is_the_codes_formula():
    gen = torch.Generator().manual_seed(0)
    E = [torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(3)]
    S, B = 3, 5
    norms = [math.sqrt(sum(float(v)**2 for v in x.flatten())) for x in E]
    hat = [[[float(v) / nrm for v in row] for row in x] for x, nrm in zip(E, norms)]

    def dot(a, b):
        return sum(p * q for p, q in zip(a, b))
    want = 0.0
    for b in range(B):
        pos = [dot(hat[m][b], hat[n][b]) for m in range(S) for n in range(m + 1, S)]
        neg = [dot(hat[m][b], hat[m][c]) if c != b else 0.0 for m in range(S) for c in range(B)]
        x = sum(neg) / len(neg) - sum(pos) / len(pos)
        want += math.log1p(math.exp(x)) / B
    assert abs(float(imf_contrastive_loss(E)) - want) < 1e-12
    with pytest.raises(ValueError, match='two modalities'):
        imf_contrastive_loss(E[:1])


def test_contrastive_term_uses_entities_with_every_modality():
    model = _model(contrastive_weight=0.5)
    e = torch.tensor([2, 3, 4, 5])  # 3 lacks the image, 5 the text
    with torch.no_grad():
        got = model.query_terms(model.prepare_scoring(), e)['contrastive']
        stack, _ = model.representation(torch.tensor([2, 4]))
    want = 0.5 * imf_contrastive_loss(list(stack.unbind(-2)))
    assert torch.allclose(got, want)
    assert _model().query_terms(None, e) == {}  # off by default (the code never calls it)


def test_feature_table_and_arguments():
    feats = {'image': torch.randn(N, D)}
    model = IMF(N, R, D, feats, feature_encoder='table')
    assert torch.equal(model.representation.x_image.detach(), feats['image'])
    with pytest.raises(ValueError, match='hidden_channels=3'):
        IMF(N, R, D, {'image': torch.randn(N, 5)}, feature_encoder='table')
    for kwargs, name in ((dict(feature_encoder='pool'), 'feature_encoder'),
                         (dict(decision='vote'), 'decision'),
                         (dict(contrastive_weight=-1.0), 'contrastive_weight'),
                         (dict(num_heads=0), 'num_heads'),
                         (dict(fusion_dropout=1.5), 'fusion_dropout'),
                         (dict(label_smoothing=1.0), 'label_smoothing')):
        with pytest.raises(ValueError, match=name):
            IMF(N, R, D, feats, **kwargs)
    with pytest.raises(ValueError, match='reserved'):
        IMF(N, R, D, {'joint': torch.randn(N, 4)})
    assert IMF(N, R, D).slots == ['structure']  # structure and its joint view
