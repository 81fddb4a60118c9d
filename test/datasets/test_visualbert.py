import importlib.util

import pytest
import torch

pytest.importorskip('transformers')

from transformers import (  # noqa: E402
    AutoTokenizer,
    BertTokenizer,
    VisualBertConfig,
    VisualBertModel,
)

from torch_mmkg.datasets.features.visualbert import VisualBertEncoder  # noqa: E402

WORDS = ['the', 'a', 'city', 'river', 'paris', 'france', 'capital', 'of', 'is', 'in', 'big',
         'small', 'dog', 'cat', '.', ',']
VISUAL_DIM = 16
HIDDEN = 32

TEXTS = ['paris is the capital of france .', 'a river', None, 'the big dog is in a small city',
         '', 'cat']


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('tiny_visualbert')
    vocab = path / 'vocab.txt'
    vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + WORDS) + '\n')
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True)
    config = VisualBertConfig(vocab_size=5 + len(WORDS), hidden_size=HIDDEN,
                              num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=37, visual_embedding_dim=VISUAL_DIM,
                              max_position_embeddings=64, pad_token_id=0)
    torch.manual_seed(12345)
    VisualBertModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope='module')
def reference(model_dir):
    model = VisualBertModel.from_pretrained(model_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model, tokenizer


def _visual():
    g = torch.Generator().manual_seed(7)
    return [torch.randn(3, VISUAL_DIM, generator=g), None, torch.randn(1, VISUAL_DIM, generator=g),
            torch.randn(5, VISUAL_DIM, generator=g), None, torch.randn(2, VISUAL_DIM, generator=g)]


def _reference_cls(reference, text, visual=None):
    model, tokenizer = reference
    enc = tokenizer([text], return_tensors='pt')
    kwargs = {}
    if visual is not None:
        v = visual.unsqueeze(0)
        kwargs = dict(visual_embeds=v,
                      visual_token_type_ids=torch.ones(v.shape[:-1], dtype=torch.long),
                      visual_attention_mask=torch.ones(v.shape[:-1], dtype=torch.long))
    with torch.no_grad():
        out = model(input_ids=enc['input_ids'], attention_mask=enc['attention_mask'],
                    token_type_ids=enc['token_type_ids'], **kwargs)
    return out.last_hidden_state[0, 0]


def test_lazy_load_dims_and_name(model_dir):
    enc = VisualBertEncoder(model_dir + '/', progress=False)
    assert enc._model is None and enc._tokenizer is None  # nothing loaded yet
    assert enc.name == f'visualbert-{model_dir.rstrip("/").split("/")[-1]}'
    assert enc.dim == HIDDEN and enc.visual_dim == VISUAL_DIM
    assert not enc.model.training
    assert enc.device == torch.device('cpu')
    assert 'VisualBertEncoder(visualbert-' in repr(enc)


def test_matches_hand_built_model_call(model_dir, reference):
    enc = VisualBertEncoder(model_dir, progress=False)
    text, visual = TEXTS[0], _visual()[0]
    out = enc.encode([text], [visual])
    assert out.shape == (1, HIDDEN) and out.dtype == torch.float32
    assert torch.allclose(out[0], _reference_cls(reference, text, visual), atol=1e-5)


def test_built_model_and_tokenizer_objects(model_dir, reference):
    model, tokenizer = reference
    enc = VisualBertEncoder(model, tokenizer=tokenizer, progress=False)
    by_path = VisualBertEncoder(model_dir, progress=False)
    visual = _visual()
    assert torch.allclose(enc.encode(TEXTS, visual), by_path.encode(TEXTS, visual), atol=1e-5)
    # A built model loads its tokenizer from config.name_or_path (the local folder here).
    assert VisualBertEncoder(model, progress=False).encode(TEXTS[:1]).shape == (1, HIDDEN)


def test_batching_and_padding_invariance(model_dir):
    visual = _visual()
    for missing in ('xavier', 'text_only'):
        one = VisualBertEncoder(model_dir, batch_size=1, missing_image=missing,
                                progress=False).encode(TEXTS, visual)
        three = VisualBertEncoder(model_dir, batch_size=3, missing_image=missing,
                                  progress=False).encode(TEXTS, visual)
        assert one.shape == (len(TEXTS), HIDDEN)
        assert torch.allclose(one, three, atol=1e-5)
    # Rows do not depend on the other entities of the call either.
    enc = VisualBertEncoder(model_dir, batch_size=8, progress=False)
    full = enc.encode(TEXTS, visual)
    assert torch.allclose(full[3], enc.encode(TEXTS[3:4], visual[3:4])[0], atol=1e-5)


def test_xavier_missing_image(model_dir, reference):
    enc = VisualBertEncoder(model_dir, seed=3, progress=False)
    token = enc.xavier_token(2)
    g = torch.Generator().manual_seed(3 + 2)
    expected = torch.nn.init.xavier_uniform_(torch.empty(1, VISUAL_DIM), generator=g)
    assert torch.equal(token, expected)
    bound = (6.0 / (VISUAL_DIM + 1)) ** 0.5
    assert token.abs().max() <= bound

    texts = ['a river', 'the city', 'cat']
    out = enc.encode(texts)
    assert torch.equal(out, enc.encode(texts))  # deterministic
    assert torch.allclose(out, VisualBertEncoder(model_dir, seed=3, progress=False)
                          .encode(texts), atol=0)
    # Passing the documented Xavier token explicitly gives the same feature.
    explicit = enc.encode(texts, [None, None, token])
    assert torch.allclose(out, explicit, atol=1e-6)
    assert torch.allclose(out[2], _reference_cls(reference, 'cat', token), atol=1e-5)
    # Another seed gives other tokens, hence other features.
    other = VisualBertEncoder(model_dir, seed=4, progress=False).encode(texts)
    assert not torch.allclose(out, other, atol=1e-4)
    # Two entities with the same text but different positions get different tokens.
    same = enc.encode(['cat', 'cat'])
    assert not torch.allclose(same[0], same[1], atol=1e-4)


def test_text_only_equals_no_visual_call(model_dir, reference):
    enc = VisualBertEncoder(model_dir, missing_image='text_only', batch_size=6, progress=False)
    visual = _visual()
    out = enc.encode(TEXTS, visual)  # batched with entities that have up to 5 visual tokens
    for i in (1, 4):  # no image
        assert torch.allclose(out[i], _reference_cls(reference, TEXTS[i]), atol=1e-5)
    for i in (0, 2, 3, 5):
        assert torch.allclose(out[i], _reference_cls(reference, TEXTS[i] or '', visual[i]),
                              atol=1e-5)
    # An entity with an image differs from the same text without one.
    without = enc.encode([TEXTS[0]])[0]
    assert not torch.allclose(out[0], without, atol=1e-4)
    # An empty [0, visual_dim] tensor counts as no image.
    assert torch.allclose(enc.encode(['cat'], [torch.empty(0, VISUAL_DIM)]),
                          enc.encode(['cat']), atol=1e-6)


def test_empty_text_is_cls_sep(model_dir, reference):
    enc = VisualBertEncoder(model_dir, missing_image='text_only', progress=False)
    out = enc.encode([None, '', '   '])
    expected = _reference_cls(reference, '')
    assert reference[1]('')['input_ids'] == [2, 3]  # [CLS] [SEP]
    for row in out:
        assert torch.allclose(row, expected, atol=1e-5)


def test_truncation(model_dir):
    enc = VisualBertEncoder(model_dir, max_length=4, progress=False)
    long = 'the big dog is in a small city'
    assert torch.allclose(enc.encode([long]), enc.encode(['the big']), atol=1e-5)


def test_encode_entities_mask(model_dir):
    visual = [None, torch.randn(2, VISUAL_DIM), None, None, torch.randn(1, VISUAL_DIM)]
    texts = ['a river', None, '  ', 'cat', '']
    for missing in ('xavier', 'text_only'):
        enc = VisualBertEncoder(model_dir, missing_image=missing, batch_size=2, progress=False)
        x, mask = enc.encode_entities(texts, visual)
        assert mask.dtype == torch.bool
        assert mask.tolist() == [True, True, False, True, True]
        assert x.shape == (5, HIDDEN) and x.dtype == torch.float32
        assert torch.equal(x[2], torch.zeros(HIDDEN))
        assert (x[mask] != 0).any(dim=1).all()
        # Same rows as encode(); Xavier tokens keep the entity's position as seed.
        full = enc.encode(texts, visual)
        assert torch.allclose(x[mask], full[mask], atol=1e-5)
    x, mask = enc.encode_entities([None, ''])
    assert not mask.any() and torch.equal(x, torch.zeros(2, HIDDEN))
    x, mask = enc.encode_entities([])
    assert x.shape == (0, HIDDEN) and mask.shape == (0, )


def test_errors(model_dir):
    with pytest.raises(ValueError, match='missing_image'):
        VisualBertEncoder(model_dir, missing_image='zeros')
    with pytest.raises(ValueError, match='batch_size'):
        VisualBertEncoder(model_dir, batch_size=0)
    with pytest.raises(TypeError, match='model must be'):
        VisualBertEncoder(42)
    enc = VisualBertEncoder(model_dir, progress=False)
    good = torch.zeros(1, VISUAL_DIM)
    with pytest.raises(ValueError, match='2 visual entries for 3 texts'):
        enc.encode(['a', 'b', 'c'], [good, None])
    with pytest.raises(ValueError, match='Entity 1: visual tokens must be a 2-d'):
        enc.encode(['a', 'b'], [good, torch.zeros(VISUAL_DIM)])
    with pytest.raises(ValueError, match='Entity 1: visual tokens must be a 2-d'):
        enc.encode_entities(['a', 'b'], [None, torch.zeros(1, 2, VISUAL_DIM)])
    with pytest.raises(ValueError, match=r'Entity 0: visual tokens have width 8.*visual_dim=16'):
        enc.encode(['a'], [torch.zeros(2, 8)])
    bad = torch.zeros(2, VISUAL_DIM)
    bad[1, 3] = float('nan')
    with pytest.raises(ValueError, match='Entity 2: visual tokens hold non-finite'):
        enc.encode(['a', 'b', 'c'], [good, None, bad])
    bad[1, 3] = float('inf')
    with pytest.raises(ValueError, match='Entity 2: visual tokens hold non-finite'):
        enc.encode_entities(['a', 'b', 'c'], [good, None, bad])
    with pytest.raises(ValueError, match='Entity 0: the text must be a str'):
        enc.encode([3])


def test_missing_transformers(monkeypatch, model_dir):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == 'transformers':
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, 'find_spec', find_spec)
    with pytest.raises(ImportError, match=r'pip install "torch_mmkg\[multimodal\]"'):
        VisualBertEncoder(model_dir)


def test_quiet_and_device(model_dir, capfd):
    enc = VisualBertEncoder(model_dir, device='cpu', progress=False)
    capfd.readouterr()
    enc.encode(['a river'], [torch.randn(2, VISUAL_DIM)])
    err = capfd.readouterr().err
    assert 'Loading weights' not in err and 'Encoding entities' not in err
    assert enc.device == torch.device('cpu')
    from transformers.utils import logging as hf_logging
    assert hf_logging.is_progress_bar_enabled()  # restored after loading
    VisualBertEncoder(model_dir, progress=True).encode(['cat'])
    assert 'Encoding entities (visualbert-' in capfd.readouterr().err


def test_unsupported_models(model_dir):
    config = VisualBertConfig(vocab_size=5 + len(WORDS), hidden_size=HIDDEN,
                              num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=37, visual_embedding_dim=VISUAL_DIM)
    with pytest.raises(ValueError, match='needs a tokenizer'):
        VisualBertEncoder(VisualBertModel(config), progress=False).encode(['cat'])
    config.bypass_transformer = True
    enc = VisualBertEncoder(VisualBertModel(config), tokenizer=model_dir, progress=False)
    assert enc.name == 'visualbert-custom'
    with pytest.raises(ValueError, match='bypass_transformer'):
        enc.encode(['cat'])


def test_features_train_vbkgc(model_dir):
    # end to end: entity features from the encoder feed VBKGC, and twins negatives train it
    from torch_mmkg.loader import NegativeSampler
    from torch_mmkg.nn import VBKGC
    enc = VisualBertEncoder(model_dir, progress=False)
    texts = TEXTS + [None]
    visual = _visual() + [None]
    x, mask = enc.encode_entities(texts, visual)
    assert not bool(mask[-1]) and bool(mask[0])  # the last entity has neither
    n = len(texts)
    model = VBKGC(n, 2, 8, {'visualbert': x}, {'visualbert': mask})
    h, r, t = torch.arange(n - 1), torch.arange(n - 1) % 2, (torch.arange(n - 1) + 1) % n
    neg = NegativeSampler(n, 3, twins=True, generator=torch.Generator().manual_seed(0))(h, r, t)
    loss = model.loss(h, r, t, neg)
    loss.backward()
    grad = model.representation.projection.mlps['visualbert'][0].weight.grad
    assert torch.isfinite(loss) and grad.abs().sum() > 0
