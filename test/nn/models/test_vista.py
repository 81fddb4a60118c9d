import math

import pytest
import torch
from _naive_transformer import encoder, layer_norm

from torch_mmkg.nn import MODELS, VISTA
from torch_mmkg.nn.models._transformer import order_instances_by_similarity

N, R, D = 10, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def make(seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    feats = {'image': torch.randn(N, 3, 5, generator=g), 'text': torch.randn(N, 6, generator=g)}
    masks = {'image': torch.rand(N, 3, generator=g) > 0.4, 'text': torch.arange(N) % 3 != 0}
    masks['image'][0] = False  # entity 0: no image, no text
    masks['image'][1] = True
    args = dict(num_heads=2, feedforward_channels=8, num_decoder_layers=2,
                instance_order='given')
    args.update(kwargs)
    torch.manual_seed(seed)
    model = VISTA(N, R, D, feats, masks, **args).double()
    with torch.no_grad():  # non-trivial layer norms and biases
        for name, p in model.named_parameters():
            if 'norm' in name or 'bias' in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval(), feats, masks


def naive_tokens(rep, e):
    r"""[LN(e_s) + p_s, LN_m(W_m x_{m,k}) + p_m ...] and whether each exists."""
    toks = [layer_norm(rep.node_emb.weight[e], rep.structure_norm) + rep.position[0]]
    present = [True]
    for i, m in enumerate(rep.modalities):
        k = getattr(rep, f'mask_{m}')[e]
        if m in rep.token_modalities:  # rows of the frozen table
            x = getattr(rep, f'x_{m}')[getattr(rep, f'ids_{m}')[e]]
        else:
            x = getattr(rep, f'x_{m}')[e]
        if x.dim() == 1:
            x, k = x[None], k[None]
        lin = rep.projections[m]
        for j in range(x.size(0)):
            toks.append(layer_norm(lin.weight @ x[j] + lin.bias, rep.norms[m])
                        + rep.position[i + 1])
            present.append(bool(k[j]) or not rep.mask_missing)
    return toks, present


def naive_encode(rep, fusion, e):
    toks, present = naive_tokens(rep, e)
    return encoder([fusion.cls[0]] + toks, [True] + present, fusion.encoder)


def naive_entity(model, e):
    return naive_encode(model.representation, model.fusion, e)[0]


def naive_relation(model, r):
    if model.relation_representation is None:
        return layer_norm(model.rel_emb.weight[r], model.relation_norm)
    return naive_encode(model.relation_representation, model.relation_fusion, r)[0]


def naive_decoder(model, h, r, t):
    r"""Dec([h + p_h, r + p_r, t + p_t]) with the unknown side the [MASK] (h or t None)."""
    it = model.interaction
    p, M = it.position, it.mask_token[0]
    seq = [(M if h is None else h) + p[0], r + p[1], (M if t is None else t) + p[2]]
    return encoder(seq, None, it.decoder)


def naive_score(model, h, r, t, head_query=False):
    E = [naive_entity(model, e) for e in range(N)]
    rel = naive_relation(model, r)
    if head_query:  # (?, r, t): the [MASK] at the head position, scored against h
        out = naive_decoder(model, None, rel, E[t])
        return float((out[0] * E[h]).sum())
    out = naive_decoder(model, E[h], rel, None)
    return float((out[2] * E[t]).sum())


def test_scores_follow_the_equations():
    model, _, _ = make()
    h, r, t = torch.tensor([0, 3, 5, 1]), torch.tensor([0, 2, 1, 1]), torch.tensor([4, 0, 5, 9])
    with torch.no_grad():
        tails = model(h, r, t)
        heads = model(t, r + R, h)
        for b in range(4):
            want = naive_score(model, int(h[b]), int(r[b]), int(t[b]))
            assert math.isclose(float(tails[b]), want, abs_tol=1e-9)
            want = naive_score(model, int(h[b]), int(r[b]), int(t[b]), head_query=True)
            assert math.isclose(float(heads[b]), want, abs_tol=1e-9)
        assert torch.allclose(model.score_heads(r, t)[torch.arange(4), h], heads)


def test_entity_encoder_follows_the_equation():
    model, _, _ = make(mask_missing=False)
    with torch.no_grad():
        table = model.entity()
        for e in (0, 2, 7):
            assert torch.allclose(table[e], naive_entity(model, e), atol=1e-9)


def test_missing_inputs_never_matter():
    model, feats, masks = make()
    with torch.no_grad():
        before = model.score_tails(torch.arange(N), torch.zeros(N, dtype=torch.long))
        rep = model.representation
        rep.x_image[~masks['image']] = 1e3
        rep.x_text[~masks['text']] = -7.0
        after = model.score_tails(torch.arange(N), torch.zeros(N, dtype=torch.long))
    assert torch.allclose(before, after, atol=1e-9)
    assert torch.isfinite(before[0]).all()  # entity 0 has no modality: CLS and structure


def test_unmasked_attends_to_missing_inputs():
    model, feats, masks = make(mask_missing=False)
    with torch.no_grad():
        before = model.entity()
        model.representation.x_text[~masks['text']] = 5.0
        after = model.entity()
    changed = (before - after).abs().sum(-1) > 1e-6
    assert torch.equal(changed, ~masks['text'])


def test_one_to_n_loss_is_the_smoothed_cross_entropy():
    model, _, _ = make(label_smoothing=0.2)
    e, r = torch.tensor([1, 4, 6]), torch.tensor([0, 4, 2])
    target = torch.zeros(3, N)
    target[0, [2, 3]] = 1
    target[1, 0] = target[2, 9] = 1
    with torch.no_grad():
        loss = float(model.loss_1n(e, r, target))
        logits = model.score_tails(e, r)
    want = 0.0
    for b in range(3):
        lse = math.log(sum(math.exp(float(x)) for x in logits[b]))
        count = float(target[b].sum())
        for n in range(N):
            y = 0.8 * float(target[b, n]) / count + 0.2 / N
            want -= y * (float(logits[b, n]) - lse)
    assert math.isclose(loss, want / 3, abs_tol=1e-9)


def test_instances_sorted_by_similarity_then_truncated():
    g = torch.Generator().manual_seed(3)
    x, mask = torch.randn(5, 4, 3, generator=g).double(), torch.rand(5, 4, generator=g) > 0.3
    got_x, got_m = order_instances_by_similarity(x, mask)
    for n in range(5):
        def score(k):
            if not mask[n, k]:
                return -math.inf
            return sum(float(torch.cosine_similarity(x[n, k], x[n, j], dim=0))
                       for j in range(4) if mask[n, j])
        order = sorted(range(4), key=lambda k: -score(k))  # stable: ties keep their order
        assert torch.equal(got_x[n], x[n, order]) and torch.equal(got_m[n], mask[n, order])
    model, feats, masks = make(max_instances=2, instance_order='similarity')
    want_x, want_m = order_instances_by_similarity(feats['image'], masks['image'])
    assert torch.allclose(model.representation.x_image, want_x[:, :2].to(torch.float64))
    assert torch.equal(model.representation.mask_image, want_m[:, :2])


def test_batch_encoding_option_uses_the_cached_table():
    model, _, _ = make(encode_all=False, dropout=0.0, structure_dropout=0.0,
                       modality_dropout=0.0)
    model.train()
    e1, r1 = torch.tensor([1, 2]), torch.tensor([0, 1])
    model.score_queries(e1, r1)
    with torch.no_grad():
        old = model.eval().entity()
        for p in model.representation.parameters():
            p.add_(0.1)
        new = model.entity()
    model.train()
    e2, r2 = torch.tensor([3, 3, 7]), torch.tensor([2, 0, 4])
    logits = model.score_queries(e2, r2).views[0][1]
    table = old.clone()
    table[[3, 7]] = new[[3, 7]]
    with torch.no_grad():
        want = model.interaction.score_tails(table[e2], model.relation(r2), table)
    assert torch.allclose(logits, want, atol=1e-9)
    logits.logsumexp(-1).sum().backward()
    grad = model.representation.node_emb.weight.grad
    assert (grad[[3, 7]].abs().sum(-1) > 0).all()
    others = [i for i in range(N) if i not in (3, 7)]
    assert grad[others].abs().sum() == 0
    # evaluation encodes all entities, as with encode_all=True
    full, _, _ = make()
    full.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model.eval().score_tails(e2, r2), full.score_tails(e2, r2))


def test_every_query_direction_is_one_relation_embedding():
    model, _, _ = make()
    assert model.rel_emb.weight.shape == (R, D)
    r = model.relation(torch.tensor([1, 1 + R]))
    assert torch.equal(r[0, :-1], r[1, :-1]) and r[:, -1].tolist() == [0.0, 1.0]


def test_relation_features_are_tokens_of_the_relation_encoder():
    g = torch.Generator().manual_seed(0)
    rel = {'image': torch.randn(R, 2, 4, generator=g)}
    rmask = {'image': torch.tensor([[True, False], [False, False], [True, True]])}
    model, _, _ = make(relation_features=rel, relation_masks=rmask)
    with torch.no_grad():
        got = model.encode_relations(torch.arange(R))
        for r in range(R):
            assert torch.allclose(got[r], naive_relation(model, r), atol=1e-9)


def test_learns_a_planted_pattern():
    torch.manual_seed(0)
    h = torch.arange(N)
    t = (h + 1) % N
    r = torch.zeros(N, dtype=torch.long)
    model = VISTA(N, 1, 8, num_heads=2, feedforward_channels=16, structure_dropout=0.0,
                  dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    target = torch.zeros(2 * N, N)
    target[h, t] = 1
    target[N + t, h] = 1
    e, rel = torch.cat([h, t]), torch.cat([r, r + 1])
    for _ in range(150):  # a plateau near log N, then the pattern
        opt.zero_grad()
        model.loss_1n(e, rel, target).backward()
        opt.step()
    with torch.no_grad():
        pred = model.eval().score_tails(h, r).argmax(-1)
    assert (pred == t).float().mean() >= 0.9


def test_bad_arguments():
    feats = {'image': torch.randn(N, 3)}
    with pytest.raises(ValueError, match='divisible by num_heads'):
        VISTA(N, R, 6, feats, num_heads=4)
    with pytest.raises(ValueError, match='structure_dropout'):
        VISTA(N, R, D, feats, num_heads=2, structure_dropout=1.5)
    with pytest.raises(ValueError, match='instance_order'):
        VISTA(N, R, D, feats, num_heads=2, instance_order='random')
    with pytest.raises(ValueError, match='max_instances'):
        VISTA(N, R, D, feats, num_heads=2, max_instances=0)
    with pytest.raises(ValueError, match='relation_encoder'):
        VISTA(N, R, D, feats, num_heads=2, relation_encoder=False,
              relation_features={'image': torch.randn(R, 3)})
    with pytest.raises(ValueError, match="features of 'image'"):
        VISTA(N, R, D, {'image': torch.randn(N + 1, 3)}, num_heads=2)
    with pytest.raises(ValueError, match='score_tails: head_index'):
        VISTA(N, R, D, feats, num_heads=2).score_tails(torch.tensor([N]), torch.tensor([0]))
    assert MODELS['VISTA'] is VISTA
