import pytest
import torch

from torch_mmkg.completion import (ModalityCompleter, TranslatorCompleter, completed_key,
                                   completion_cosine, original_mask)
from torch_mmkg.data import build_mmkg, validate_mmkg
from torch_mmkg.evaluation import entity_completeness
from torch_mmkg.transforms import CompleteModality

pytestmark = pytest.mark.usefixtures('single_thread')


def planted_graph(n=400, seed=0):
    # 'text' is a fixed nonlinear function of 'image'; 'numeric' is independent noise
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 6, generator=g)
    text = torch.tanh(image @ torch.randn(6, 10, generator=g)) + 0.5
    numeric = torch.randn(n, 3, generator=g)
    masks = {'image': torch.arange(n) % 5 != 0, 'text': torch.arange(n) % 4 != 1,
             'numeric': torch.arange(n) % 7 != 2}
    feats = {'image': image, 'text': text, 'numeric': numeric}
    for m in feats:
        feats[m] = torch.where(masks[m][:, None], feats[m], torch.zeros(()))
    edges = torch.randint(0, n, (2, 60), generator=g)
    triples = torch.stack([edges[0], torch.zeros(60, dtype=torch.long), edges[1]], 1)
    return build_mmkg(n, 1, {'train': triples}, features=feats, masks=masks)


def test_translator_restores_a_planted_modality():
    data = planted_graph()
    res = completion_cosine(TranslatorCompleter(hidden_channels=64, epochs=150, patience=30,
                                                progress=False), data, 'text',
                            sources=['image'])
    assert res['num_heldout'] > 40
    assert res['cosine'] > 0.9, res
    assert res['baseline_cosine'] < res['cosine'] - 0.1, res
    # from pure noise it cannot do better than the mean
    noise = completion_cosine(TranslatorCompleter(hidden_channels=64, epochs=60, progress=False),
                              data, 'text', sources=['numeric'])
    assert noise['cosine'] < res['cosine'] - 0.1


def test_complete_modality_fills_and_flags():
    data = planted_graph()
    completer = TranslatorCompleter(hidden_channels=32, epochs=20, progress=False)
    out = CompleteModality('text', completer)(data)
    ent, src = out['entity'], data['entity']
    flag = ent[completed_key('text')]
    had = src.mask_text
    has_source = src.mask_image | src.mask_numeric
    assert torch.equal(flag, ~had & has_source)  # exactly the completable ones
    assert torch.equal(ent.mask_text, had | flag)
    assert torch.equal(original_mask(out, 'text'), had)
    assert torch.equal(ent.x_text[had], src.x_text[had])  # present rows untouched
    assert torch.all(ent.x_text[flag].abs().sum(1) > 0)
    idx = flag.nonzero().view(-1)
    assert torch.allclose(ent.x_text[idx], completer.complete(data, 'text', idx))
    # the mean over the sources an entity has
    both = idx[src.mask_image[idx] & src.mask_numeric[idx]][:3]
    t = completer.translators
    with torch.no_grad():
        mean = (t['image'](src.x_image[both]) + t['numeric'](src.x_numeric[both])) / 2
    assert torch.allclose(ent.x_text[both], completer.mean + completer.std * mean, atol=1e-5)
    # the source graph is untouched, the result valid; completeness uses original masks
    assert torch.equal(data['entity'].mask_text, had)
    validate_mmkg(out)
    assert torch.equal(entity_completeness(out), entity_completeness(data))
    # completing again finds nothing new, the flags are kept
    again = CompleteModality('text', completer, fit=False)(out)
    assert torch.equal(again['entity'][completed_key('text')], flag)


class _Constant(ModalityCompleter):
    def __init__(self, width, value=1.0):
        self.width, self.value = width, value

    def completable(self, data, target):
        return torch.arange(data['entity'].num_nodes) % 2 == 0

    def complete(self, data, target, index):
        return torch.full((index.numel(), self.width), self.value)


def test_complete_modality_creates_a_new_modality():
    data = planted_graph(40)
    out = CompleteModality('audio', _Constant(4))(data)
    assert out.modalities == ['image', 'text', 'numeric', 'audio']
    k = out['entity'].mask_audio
    assert torch.equal(k, torch.arange(40) % 2 == 0)
    assert torch.equal(out['entity'][completed_key('audio')], k)
    assert torch.all(out['entity'].x_audio[~k] == 0)
    assert not original_mask(out, 'audio').any()


def test_errors():
    data = planted_graph(40)
    with pytest.raises(ValueError, match='width'):
        CompleteModality('text', _Constant(3), fit=False)(data)
    with pytest.raises(ValueError, match='NaN'):
        CompleteModality('audio', _Constant(2, float('nan')))(data)
    with pytest.raises(ValueError, match='already have'):
        CompleteModality('image', _Constant(6), fit=False)(data)
    with pytest.raises(ValueError, match='ModalityCompleter'):
        CompleteModality('text', object())
    with pytest.raises(ValueError, match='not in the graph'):
        TranslatorCompleter(progress=False).fit(data, 'video')
    with pytest.raises(ValueError, match='sources'):
        TranslatorCompleter(progress=False).fit(data, 'text', ['text'])
    with pytest.raises(RuntimeError, match='not fitted'):
        TranslatorCompleter(progress=False).complete(data, 'text', torch.tensor([1]))
    c = TranslatorCompleter(epochs=1, progress=False).fit(data, 'text', ['image'])
    with pytest.raises(ValueError, match='none of the source'):
        c.complete(data, 'text', torch.tensor([0]))  # entity 0 has no image
    with pytest.raises(ValueError, match='out of range'):
        c.complete(data, 'text', torch.tensor([40]))
    with pytest.raises(ValueError, match="fit for 'text'"):
        c.complete(data, 'image', torch.tensor([1]))


def test_eta_one_says_what_to_do():
    # LBMKGC's Fig. 3 at eta = 1: every row of the target dropped, nothing to learn from
    from torch_mmkg.transforms import DropModality
    data = DropModality(1.0, modalities=['text'], seed=0)(planted_graph(40))
    assert not data['entity'].mask_text.any()
    with pytest.raises(ValueError) as info:
        CompleteModality('text', TranslatorCompleter(epochs=1, progress=False))(data)
    msg = str(info.value)
    assert "cannot complete 'text'" in msg
    assert 'present for 0 of 40 entities' in msg
    assert 'DropModality(1.0)' in msg and 'eta < 1' in msg
    assert 'DiffusionImageCompleter' in msg and "RandomFillModality(['text']" in msg
    with pytest.raises(ValueError, match=r"only 0 entities originally have 'text'.*"
                                         r"DropModality\(1\.0\)"):
        completion_cosine(TranslatorCompleter(epochs=1, progress=False), data, 'text')
    # a source that never co-occurs with the target: the message names the way out
    data = planted_graph(40)
    data['entity'].mask_numeric = torch.zeros(40, dtype=torch.bool)
    data['entity'].x_numeric = torch.zeros_like(data['entity'].x_numeric)
    with pytest.raises(ValueError, match=r"'numeric' -> 'text' can be fit: 0 entities "
                                         r"originally have both.*sources=\['image'\]"):
        TranslatorCompleter(epochs=1, progress=False).fit(data, 'text')
