import math

import pytest
import torch

from torch_mmkg.loader import NegativeSampler
from torch_mmkg.nn import MMKRL, MODELS
from torch_mmkg.testing import assert_scoring_consistent, planted_mrr_gain

N, R, D = 12, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def make(**kwargs):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    feats = {'image': torch.randn(N, 5, generator=g), 'text': torch.randn(N, 3, generator=g)}
    # entity 0 lacks both modalities; others lack one
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 4 != 0}
    model = MMKRL(N, R, D, feats, masks, **kwargs).double()
    return model, masks


def triples(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
            torch.randint(0, N, (n, ), generator=g))


def naive_parts(model, masks, e):
    r"""(e, W_s e + b_h, W_s e + b_t, m_e) of entity e, with m_e = W_m [x_img; x_txt] + b_m
    (a missing modality's rows zero where the model masks them)."""
    rep, fu = model.representation, model.fusion
    s = model.node_emb.weight[e]
    xs, Ws = [], []
    for m in rep.modalities:
        x = rep.features(m)[e]
        if model.mask_missing and not masks[m][e]:
            x = torch.zeros_like(x)
        xs.append(x)
        Ws.append(rep.projection.mlps[m][0].weight)
    W_m = torch.cat(Ws, dim=1)  # the one linear map of the concatenated features
    m_e = W_m @ torch.cat(xs) + fu.multimodal_bias
    W_s = fu.projection.weight
    return s, W_s @ s + fu.head_bias, W_s @ s + fu.tail_bias, m_e


def naive_rel(model, r):
    raw = model.rel_emb.weight[r]
    return raw, model.fusion.projection.weight @ raw + model.fusion.relation_bias


def dist(a, r, b, normalize=True, p=1.0):
    if normalize:
        a, r, b = a / a.norm(), r / r.norm(), b / b.norm()
    return float(((a + r - b).abs()**p).sum())**(1.0 / p)


def naive_energies(model, masks, h, r, t):
    h_s, h_p, _, m_h = naive_parts(model, masks, h)
    t_s, _, t_p, m_t = naive_parts(model, masks, t)
    _, r_p = naive_rel(model, r)
    kw = dict(normalize=model.interaction.base.normalize, p=model.p_norm)
    return [dist(h_p, r_p, t_p, **kw), dist(m_h, r_p, m_t, **kw), dist(m_h, r_p, t_s, **kw),
            dist(h_s, r_p, m_t, **kw)]


@pytest.mark.parametrize('kwargs', [{}, {'mask_missing': False}, {'normalize': False},
                                    {'p_norm': 2.0}, {'trainable_features': False}])
def test_score_equals_naive_transcription(kwargs):
    model, masks = make(**kwargs)
    model.eval()
    h, r, t = triples()
    with torch.no_grad():
        s, E = model(h, r, t), model.energies(h, r, t)
        for b in range(h.numel()):
            want = naive_energies(model, masks, int(h[b]), int(r[b]), int(t[b]))
            assert torch.allclose(E[b], torch.tensor(want, dtype=E.dtype), atol=1e-12)
            assert abs(float(s[b]) + sum(want) / 4) < 1e-12
    assert_scoring_consistent(model, h, r, t, num_negatives=5, atol=1e-12)


def test_offset_score_equals_naive_transcription():
    # MMKRLTrainer's fake score: g_h added to h' and m_h, g_t to t' and m_t, never to the raw
    # structural h, t of the mixed terms; zero offsets give the model's score
    model, masks = make()
    h, r, t = triples()
    g = torch.Generator().manual_seed(7)
    gh, gt = (torch.randn(h.numel(), D, generator=g, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        hs, hm = model.modality_stack(h)
        ts, tm = model.modality_stack(t)
        got = model.offset_score_stacks(hs, hm, r, ts, tm, gh, gt)
        zero = torch.zeros_like(gh)
        assert torch.allclose(model.offset_score_stacks(hs, hm, r, ts, tm, zero, zero),
                              model(h, r, t), atol=1e-12)
        for b in range(h.numel()):
            h_s, h_p, _, m_h = naive_parts(model, masks, int(h[b]))
            t_s, _, t_p, m_t = naive_parts(model, masks, int(t[b]))
            _, r_p = naive_rel(model, int(r[b]))
            want = (dist(h_p + gh[b], r_p, t_p + gt[b]) + dist(m_h + gh[b], r_p, m_t + gt[b]) +
                    dist(m_h + gh[b], r_p, t_s) + dist(h_s, r_p, m_t + gt[b])) / 4
            assert abs(float(got[b]) + want) < 1e-12
        # broadcast: one head offset for every row
        one = model.offset_score_stacks(hs, hm, r, ts, tm, gh[0], gt)
        assert torch.allclose(one[0], got[0], atol=1e-12)


def test_views_and_relations_by_hand():
    model, masks = make()
    with torch.no_grad():
        V = model.views(torch.arange(N))
        for e in range(N):
            for got, want in zip(V[e], naive_parts(model, masks, e)):
                assert torch.allclose(got, want, atol=1e-12)
        r = torch.arange(R)
        for k in range(R):
            assert torch.allclose(model.relation(r)[k], naive_rel(model, k)[1], atol=1e-12)


def test_missing_modalities():
    model, masks = make()
    e = 3  # lacks the image
    assert not masks['image'][e]
    before = model.views(torch.tensor([e]))
    with torch.no_grad():
        model.representation.x_image[e] += 100.0
    assert torch.equal(model.views(torch.tensor([e])), before)
    model, _ = make(mask_missing=False)
    before = model.views(torch.tensor([e]))
    with torch.no_grad():
        model.representation.x_image[e] += 100.0
    assert not torch.equal(model.views(torch.tensor([e]))[..., 3, :], before[..., 3, :])
    # the entity without any modality: m_e is the bias
    assert torch.allclose(make()[0].views(torch.tensor([0]))[0, 3],
                          make()[0].fusion.multimodal_bias)


def test_alignment_terms_equal_naive_transcription():
    r"""Each of the five alignment terms by hand, over the heads and tails of the positives
    and the negatives (a mean over rows and coordinates, repeats counted), and the loss =
    margin ranking + lambda * alignment."""
    model, masks = make(margin=3.0, alignment_weight=0.7)
    h, r, t = triples(5)
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(2))(h, r, t)
    ch = neg.corrupt_head
    heads = torch.cat([h[:, None], torch.where(ch[:, None], neg.index, h[:, None])], 1)
    tails = torch.cat([t[:, None], torch.where(ch[:, None], t[:, None], neg.index)], 1)
    W_sm = model.alignment_projection.weight
    with torch.no_grad():
        hh = [naive_parts(model, masks, int(e)) for e in heads.reshape(-1)]
        tt = [naive_parts(model, masks, int(e)) for e in tails.reshape(-1)]
        terms = [
            sum(float(((p[0] - p[1])**2).mean()) for p in hh) / len(hh),   # |h - h'|^2
            sum(float(((p[0] - p[2])**2).mean()) for p in tt) / len(tt),   # |t - t'|^2
            sum(float(((a - b)**2).mean()) for a, b in
                (naive_rel(model, int(k)) for k in r)) / r.numel(),       # |r - r'|^2
            sum(float(((W_sm @ p[0] - p[3])**2).mean()) for p in hh) / len(hh),  # W_sm h - m_h
            sum(float(((W_sm @ p[0] - p[3])**2).mean()) for p in tt) / len(tt),  # W_sm t - m_t
        ]
        hinge = []
        for b in range(h.numel()):
            pos = float(model(h[b:b + 1], r[b:b + 1], t[b:b + 1]))
            for k in range(3):
                q = float(model(heads[b, k + 1:k + 2], r[b:b + 1], tails[b, k + 1:k + 2]))
                hinge.append(max(0.0, 3.0 - pos + q))
    got = model.score_batch(h, r, t, neg).terms['alignment']
    assert abs(float(got.detach()) - 0.7 * sum(terms)) < 1e-10
    assert abs(float(model.alignment_loss(heads, tails, r).detach()) - sum(terms)) < 1e-10
    loss = model.loss(h, r, t, neg)
    assert abs(float(loss.detach()) - sum(hinge) / len(hinge) - 0.7 * sum(terms)) < 1e-10


def test_alignment_under_one_to_n_and_gradients():
    model, masks = make()
    e, r, _ = triples(4)
    rel = torch.cat([r[:2], r[2:] + R])  # two head queries (?, r, e)
    got = model.score_queries(e, rel).terms['alignment']
    assert abs(float(got.detach()) - float(model.alignment_loss(e, e, r).detach())) < 1e-12
    # the alignment trains W_sm and reaches the features; without it W_sm does not exist
    model.zero_grad()
    got.backward()
    assert float(model.alignment_projection.weight.grad.abs().sum()) > 0
    assert float(model.representation.x_image.grad.abs().sum()) > 0
    plain, _ = make(alignment_weight=0.0)
    assert plain.alignment_projection is None
    h, r, t = triples()
    assert 'alignment' not in plain.score_batch(h, r, t, NegativeSampler(N, 2)(h, r, t)).terms
    frozen, _ = make(trainable_features=False)
    assert not any(n.startswith('representation.x_') for n, _ in frozen.named_parameters())


def test_init_follows_the_reimplementation():
    model, _ = make()
    model.requires_grad_(False)
    bound = 1.0 / math.sqrt(5 + 3)  # one Linear over the concatenated features
    for mlp in model.representation.projection.mlps.values():
        assert float(mlp[0].weight.abs().max()) <= bound
        assert mlp[0].bias is None
    assert float(model.fusion.multimodal_bias.abs().max()) <= bound
    assert model.fusion.projection.bias is None and model.alignment_projection.bias is None
    assert isinstance(model.representation.x_image, torch.nn.Parameter)


def test_registered_and_bad_input():
    assert MODELS['MMKRL'] is MMKRL
    feats = {'image': torch.rand(N, 5)}
    with pytest.raises(ValueError, match='at least one modality'):
        MMKRL(N, R, D, {})
    with pytest.raises(ValueError, match='margin must be'):
        MMKRL(N, R, D, feats, margin=-1.0)
    with pytest.raises(ValueError, match='alignment_weight must be'):
        MMKRL(N, R, D, feats, alignment_weight=-0.5)
    with pytest.raises(ValueError, match='mask_missing must be one of'):
        MMKRL(N, R, D, feats, mask_missing=1)
    with pytest.raises(ValueError, match=r"must be \[12, F\]"):
        MMKRL(N, R, D, {'image': torch.rand(N + 1, 5)})
    with pytest.raises(ValueError, match='energies: head_index'):
        MMKRL(N, R, D, feats).energies(torch.tensor([N]), torch.tensor([0]), torch.tensor([0]))


def chain_data(C=5, per=12, R=2, seed=0, dims=(8, 6)):
    r"""A planted pattern a translation can express: entities in C clusters on a line
    (features: a cluster prototype plus noise, 20% of the rows missing per modality) and
    relation r linking cluster c to cluster c + r + 1."""
    from torch_mmkg.data.mmkg import build_mmkg
    g = torch.Generator().manual_seed(seed)
    N = C * per
    cluster = torch.arange(N) // per
    rows = set()
    for r in range(R):
        for h in range(N):
            c = int(cluster[h]) + r + 1
            if c < C:
                rows.update((h, r, c * per + t)
                            for t in torch.randperm(per, generator=g)[:4].tolist())
    rows = torch.tensor(sorted(rows))
    rows = rows[torch.randperm(len(rows), generator=g)]
    n = len(rows) // 10
    splits = {'train': rows[2 * n:], 'val': rows[:n], 'test': rows[n:2 * n]}
    feats, masks = {}, {}
    for name, F in zip(('image', 'text'), dims):
        x = torch.randn(C, F, generator=g)[cluster] + 0.1 * torch.randn(N, F, generator=g)
        masks[name] = torch.rand(N, generator=g) > 0.2
        feats[name] = torch.where(masks[name][:, None], x, torch.zeros(()))
    return build_mmkg(N, R, splits, feats, masks)


def test_learns_planted_signal():
    data = chain_data()
    torch.manual_seed(0)
    model = MMKRL.from_data(data, 8, margin=1.0)
    before, after = planted_mrr_gain(model, data, epochs=30)
    assert after > before + 0.1
