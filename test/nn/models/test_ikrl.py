import math

import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import IKRL, MODELS
from torch_mmkg.nn.models.ikrl import dense_instances

N, R, D, K = 12, 3, 4, 3

pytestmark = pytest.mark.usefixtures('single_thread')


def features(seed=0):
    r"""'image': K images per entity with holes (entity 0 has none, entity 1 one, entity 2
    two); 'text': one vector per entity, missing for entities 0 and 5."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(N, K, 6, generator=g)
    mask = torch.ones(N, K, dtype=torch.bool)
    mask[0] = False
    mask[1, 1:] = False
    mask[2, 0] = False
    mask[7, 2] = False
    text = torch.randn(N, 5, generator=g)
    text_mask = torch.ones(N, dtype=torch.bool)
    text_mask[[0, 5]] = False
    return {'image': image, 'text': text}, {'image': mask, 'text': text_mask}


def make(feats=None, masks=None, seed=0, **kwargs):
    if feats is None:
        feats, masks = features()
    torch.manual_seed(seed)
    model = IKRL(N, R, D, feats, masks, **kwargs).double()
    with torch.no_grad():  # no zero biases or symmetric values to hide a wrong term
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def triples(n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(0, N, (n, ), generator=g)
    r = torch.randint(0, R, (n, ), generator=g)
    t = torch.randint(0, N, (n, ), generator=g)
    h[0], t[1], h[2], t[3] = 0, 0, 1, 5  # no image at all; one image; no text
    return h, r, t


# The paper's formulas, entity by entity, in plain Python floats ###############################

def vec(x):
    return [float(v) for v in x.detach()]


def matvec(W, x, b=None):
    W, x = W.detach().tolist(), vec(x)
    out = [sum(W[o][i] * x[i] for i in range(len(x))) for o in range(len(W))]
    return out if b is None else [v + float(c) for v, c in zip(out, b.detach())]


def add(a, b):
    return [x + y for x, y in zip(a, b)]


def naive_attention(model, feats, masks, m, e, attention=True):
    r""":math:`\alpha_k = \exp(p_k \cdot e_s) / \sum_j \exp(p_j \cdot e_s)` over the images
    the entity has (0 for the others, all 0 without any); the mean without attention."""
    lin = model.representation.projection.mlps[m][0]
    es = vec(model.node_emb.weight[e])
    x, k = feats[m][e], masks[m][e]
    if x.dim() == 1:
        x, k = x[None], k[None]
    present = [bool(v) for v in k]
    if not any(present):
        return [0.0] * len(present)
    if not attention:
        return [1.0 / sum(present) if p else 0.0 for p in present]
    bias = None if lin.bias is None else lin.bias
    logits = [sum(a * b for a, b in zip(matvec(lin.weight, x[j], bias), es))
              for j in range(len(present))]
    top = max(v for v, p in zip(logits, present) if p)
    ex = [math.exp(v - top) if p else 0.0 for v, p in zip(logits, present)]
    return [v / sum(ex) for v in ex]


def naive_image(model, feats, masks, e, attention=True):
    r""":math:`e_i = \sum_{m \text{ present}} \sum_k \alpha_k W_m x_{m,k}`."""
    out = [0.0] * D
    for m in feats:
        lin = model.representation.projection.mlps[m][0]
        x, k = feats[m][e], masks[m][e]
        if x.dim() == 1:
            x, k = x[None], k[None]
        alpha = naive_attention(model, feats, masks, m, e, attention)
        for j in range(x.size(0)):
            if bool(k[j]):
                p = matvec(lin.weight, x[j], lin.bias)
                out = add(out, [alpha[j] * v for v in p])
    return out


def norm(v, p=1.0):
    return sum(abs(x)**p for x in v)**(1.0 / p)


def unit(v):
    n = max(math.sqrt(sum(x * x for x in v)), 1e-12)  # F.normalize's eps (e_i = 0)
    return [x / n for x in v]


def d(h, r, t, p=1.0, normalize=False):
    r""":math:`\|h + r - t\|_p`, on unit vectors with :obj:`normalize` (OpenKE)."""
    if normalize:
        h, r, t = unit(h), unit(r), unit(t)
    return norm([a + b - c for a, b, c in zip(h, r, t)], p)


def naive_terms(model, feats, masks, h, r, t, p=1.0, normalize=False, attention=True):
    r"""Per triple, the four energies :math:`d(s,s), d(i,i), d(s,i), d(i,s)`."""
    out = []
    for a, b, c in zip(h.tolist(), r.tolist(), t.tolist()):
        hs, ts = vec(model.node_emb.weight[a]), vec(model.node_emb.weight[c])
        hi = naive_image(model, feats, masks, a, attention)
        ti = naive_image(model, feats, masks, c, attention)
        rr = vec(model.rel_emb.weight[b])
        out.append([d(hs, rr, ts, p, normalize), d(hi, rr, ti, p, normalize),
                    d(hs, rr, ti, p, normalize), d(hi, rr, ts, p, normalize)])
    return torch.tensor(out, dtype=torch.float64)


# The score ####################################################################################

@pytest.mark.parametrize('kwargs', [{}, {'p_norm': 2.0}, {'normalize': True},
                                    {'multi_image_attention': False},
                                    {'projection_bias': True, 'trainable_features': True}])
def test_score_is_minus_the_four_energies(kwargs):
    feats, masks = features()
    model = make(**kwargs).eval()
    if kwargs.get('trainable_features'):  # fine-tuned (here: perturbed) tables
        assert isinstance(model.representation.x_image, torch.nn.Parameter)
        assert not torch.equal(model.representation.x_image, feats['image'].double())
        feats = {m: getattr(model.representation, f'x_{m}') for m in feats}
    h, r, t = triples()
    terms = naive_terms(model, feats, masks, h, r, t, kwargs.get('p_norm', 1.0),
                        kwargs.get('normalize', False),
                        kwargs.get('multi_image_attention', True))
    with torch.no_grad():
        torch.testing.assert_close(model(h, r, t), -terms.sum(1), atol=1e-10, rtol=0)
        parts = model.score_parts(h, r, t)
        assert list(parts) == ['ss', 'ii', 'si', 'is']
        for k, name in enumerate(parts):
            torch.testing.assert_close(parts[name], -terms[:, k], atol=1e-10, rtol=0)
        model.train()  # training scores the same four energies
        torch.testing.assert_close(model(h, r, t), -terms.sum(1), atol=1e-10, rtol=0)


def test_image_test_energy_ranks_with_the_image_energy_only():
    feats, masks = features()
    model = make(test_energy='image')
    h, r, t = triples()
    terms = naive_terms(model, feats, masks, h, r, t)
    with torch.no_grad():
        model.train()  # trained on all four
        torch.testing.assert_close(model(h, r, t), -terms.sum(1), atol=1e-10, rtol=0)
        model.eval()  # ranked by d(i, i)
        torch.testing.assert_close(model(h, r, t), -terms[:, 1], atol=1e-10, rtol=0)
        tails = model.score_tails(h, r)
        every = torch.arange(N)
        want = -naive_terms(model, feats, masks, h.repeat_interleave(N), r.repeat_interleave(N),
                            every.repeat(h.numel()))[:, 1].view(-1, N)
        torch.testing.assert_close(tails, want, atol=1e-10, rtol=0)
        metrics = model.test(h, r, t, log=False)  # the evaluator ranks with it too
    assert all(math.isfinite(v) for v in metrics)


def test_attention_weights_are_the_softmax_over_present_images():
    feats, masks = features()
    model = make()
    with torch.no_grad():
        att = model.attention()
        assert set(att) == {'image', 'text'} and att['image'].shape == (N, K)
        for e in range(N):
            want = naive_attention(model, feats, masks, 'image', e)
            torch.testing.assert_close(att['image'][e], torch.tensor(want, dtype=torch.float64),
                                       atol=1e-12, rtol=0)
        assert torch.equal(att['image'][0], torch.zeros(K, dtype=torch.float64))  # no image
        assert att['image'][1].tolist() == [1.0, 0.0, 0.0]  # one image: weight 1
        assert att['image'][2, 0] == 0 and att['image'][2, 1:].sum() == pytest.approx(1.0)
        # one vector per entity: weight 1 where present
        assert torch.equal(att['text'], masks['text'][:, None].double())
        # the attention follows the structural embedding (a query of its own entity)
        before = att['image'][3].clone()
        model.node_emb.weight[3] *= -2.0
        assert not torch.allclose(model.attention(torch.tensor([3]))['image'][0], before)


def test_one_vector_per_entity_is_w_x():
    feats, masks = features()
    single = {'image': feats['image'][:, 0], 'text': feats['text']}
    single_masks = {'image': masks['image'][:, 0], 'text': masks['text']}
    stacked = {'image': single['image'][:, None], 'text': feats['text']}
    stacked_masks = {'image': single_masks['image'][:, None], 'text': masks['text']}
    a = make(single, single_masks).eval()
    b = make(stacked, stacked_masks).eval()
    with torch.no_grad():
        e_s, e_i = a.embed()
        rep = a.representation
        want = torch.zeros(N, D, dtype=torch.float64)
        for m in ('image', 'text'):
            W = rep.projection.mlps[m][0].weight
            want += torch.where(single_masks[m][:, None], single[m].double() @ W.T, 0.0)
        torch.testing.assert_close(e_i, want, atol=1e-12, rtol=0)
        assert torch.equal(e_s, a.node_emb.weight)
        # [N, 1, F] images give exactly the same model as [N, F] ones
        assert torch.equal(b.embed()[1], e_i)
        h, r, t = triples()
        assert torch.equal(a(h, r, t), b(h, r, t))


def test_missing_images_and_modalities_never_enter():
    feats, masks = features()
    model = make().eval()
    h, r, t = triples()
    with torch.no_grad():
        want = model(h, r, t)
        tails = model.score_tails(h, r)
    garbage = {m: x.clone() for m, x in feats.items()}
    garbage['image'][~masks['image']] = 1e6
    garbage['text'][~masks['text']] = -3e5
    other = make(garbage, masks).eval()
    with torch.no_grad():
        assert torch.equal(other(h, r, t), want)
        assert torch.equal(other.score_tails(h, r), tails)
        # entity 0 has neither images nor text: e_i = 0
        assert torch.equal(other.embed(torch.tensor([0]))[1], torch.zeros(1, D).double())
    # with mask_missing=False the stored rows count (here, the garbage)
    unmasked = make(garbage, masks, mask_missing=False).eval()
    with torch.no_grad():
        assert not torch.allclose(unmasked(h, r, t), want)


def test_mean_of_images_without_attention():
    feats, masks = features()
    model = make(multi_image_attention=False)
    with torch.no_grad():
        att = model.attention()['image']
        count = masks['image'].sum(1, keepdim=True).clamp(min=1)
        torch.testing.assert_close(att, masks['image'].double() / count, atol=0, rtol=0)


def test_per_term_loss_is_one_hinge_per_energy():
    feats, masks = features()
    h, r, t = triples(8, seed=3)
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(0))(h, r, t)
    ch = neg.corrupt_head[:, None]
    hh = torch.where(ch, neg.index, h[:, None]).reshape(-1)
    tt = torch.where(ch, t[:, None], neg.index).reshape(-1)
    rr = r[:, None].expand(-1, 3).reshape(-1)
    for per_term in (True, False):
        model = make(per_term_loss=per_term, margin=4.0).train()
        pos = naive_terms(model, feats, masks, h, r, t)  # [B, 4] energies
        negs = naive_terms(model, feats, masks, hh, rr, tt).view(8, 3, 4)
        hinge = (4.0 + pos[:, None, :] - negs).clamp(min=0)  # [B, K, 4]
        if per_term:  # sum over energies of the mean hinge of each
            want = sum(float(hinge[..., k].mean()) for k in range(4))
        else:  # one hinge on the total energy
            want = float((4.0 + pos.sum(1)[:, None] - negs.sum(2)).clamp(min=0).mean())
        loss = model.loss(h, r, t, neg)
        assert loss.item() == pytest.approx(want, abs=1e-10)
        loss.backward()
        assert model.node_emb.weight.grad.abs().sum() > 0
    # the negatives' scores are the sum over the four views, as forward gives them
    model = make(per_term_loss=True).eval()
    with torch.no_grad():
        pos_s, neg_s = model.score_negatives(h, r, t, neg)
        torch.testing.assert_close(pos_s, model(h, r, t), atol=1e-12, rtol=0)
        torch.testing.assert_close(neg_s, model(hh, rr, tt).view(8, 3), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match='twins'):
        model.score_batch(h, r, t, neg._replace(twins=True))


def test_from_data_with_several_images_per_entity():
    data = FakeMMKGDataset(num_entities=N, num_relations=R, num_triples=40,
                           modalities={'text': 5}, seed=0)[0]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 6, generator=g)
    # images 0-6 of entities 4, 2, 4, 9, 4, 2, 11 (entity 4 has three, 2 two)
    ent = torch.tensor([4, 2, 4, 9, 4, 2, 11])
    data['image'].x = x
    data['image', 'of', 'entity'].edge_index = torch.stack([torch.arange(7), ent])
    dense, mask = dense_instances(data, 'image')
    assert dense.shape == (N, 3, 6) and mask.shape == (N, 3)
    assert mask.sum(1).tolist() == [0, 0, 2, 0, 3, 0, 0, 0, 0, 1, 0, 1]
    assert torch.equal(dense[4], x[[0, 2, 4]]) and torch.equal(dense[2, :2], x[[1, 5]])
    assert torch.equal(dense[2, 2], torch.zeros(6)) and torch.equal(dense[11, 0], x[6])
    model = IKRL.from_data(data, D, instances={'image': 'image'})
    assert model.modalities == ['text', 'image']
    assert model.representation.num_instances('image') == 3
    assert model.representation.num_instances('text') is None
    h, r, t = triples()
    assert torch.isfinite(model(h, r, t)).all()
    with pytest.raises(ValueError, match="no instance node type 'video'"):
        dense_instances(data, 'video')


def test_registered_and_defaults():
    assert MODELS['ikrl'] is IKRL and MODELS['IKRL'] is IKRL
    model = make()
    assert isinstance(model.loss_fn.margin, float) and model.loss_fn.margin == 4.0
    assert model.p_norm == 1.0 and model.test_energy == 'all' and not model.per_term_loss
    assert model.rel_emb.weight.shape == (R, D)
    assert model.representation.attention and not model.interaction.base.normalize
    assert model.supports_twins  # (s, s), (i, i) unimodal; (s, i), (i, s) cross-modal


def test_bad_input():
    feats, masks = features()
    with pytest.raises(ValueError, match="IKRL: test_energy must be one of 'all', 'image'"):
        IKRL(N, R, D, feats, masks, test_energy='both')
    with pytest.raises(ValueError, match='IKRL: margin must be'):
        IKRL(N, R, D, feats, masks, margin=0.0)
    with pytest.raises(ValueError, match='IKRL: normalize must be one of True, False'):
        IKRL(N, R, D, feats, masks, normalize=1)
    with pytest.raises(ValueError, match='at least one modality'):
        IKRL(N, R, D, {})
    with pytest.raises(ValueError, match=r"features of 'image' must be a float \[12, F\]"):
        IKRL(N, R, D, {'image': torch.randn(N, 2, 3, 4)})
    with pytest.raises(ValueError, match=r"mask of 'image' must be a \[12, 3\] bool"):
        IKRL(N, R, D, feats, {'image': masks['image'][:, 0]})
    bad = feats['image'].clone()
    bad[3, 1, 2] = float('nan')
    with pytest.raises(ValueError, match=r"features of 'image' contain NaN or Inf \(entities "
                                         r"\[3\]\)"):
        IKRL(N, R, D, {'image': bad})
