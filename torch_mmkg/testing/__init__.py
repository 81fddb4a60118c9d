r"""Test decorators, in the style of :mod:`torch_geometric.testing`."""
import functools
import importlib.util
import os
import os.path as osp
from typing import Callable, List, Tuple

import pytest
import torch

__all__ = ['is_full_test', 'onlyFullTest', 'withPackage', 'withCUDA', 'devices',
           'mirror_dir', 'withMirror', 'assert_scoring_consistent', 'planted_mrr_gain',
           'fresh_compile_state',
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
