r"""The evaluator's progress bar says when the first evaluation of the process compiles a
scoring kernel (a wait of a few seconds)."""

import pytest
import torch
from tqdm.auto import tqdm

import torch_mmkg.evaluation.evaluator as evaluator
import torch_mmkg.ops.compile as compile_state
from torch_mmkg.testing import fresh_compile_state
from torch_mmkg.evaluation import RankingEvaluator
from torch_mmkg.nn import RotatE
from torch_mmkg.ops import set_compile


@pytest.fixture
def fresh(monkeypatch):
    r"""Nothing compiled yet; :func:`torch.compile` replaced by an instant stand-in."""
    fresh_compile_state(monkeypatch)
    monkeypatch.setattr(torch, 'compile', lambda fn, **kwargs: fn)


@pytest.fixture
def postfixes(monkeypatch):
    seen = []

    class RecordingBar(tqdm):
        def set_postfix_str(self, s='', refresh=True):
            seen.append((self.n, s))
            super().set_postfix_str(s, refresh)

    monkeypatch.setattr(evaluator, 'tqdm', RecordingBar)
    return seen


def triples(N=20, R=3, T=9):
    gen = torch.Generator().manual_seed(0)
    return (torch.randint(0, N, (T, ), generator=gen), torch.randint(0, R, (T, ), generator=gen),
            torch.randint(0, N, (T, ), generator=gen))


def test_first_evaluation_says_it_compiles(fresh, postfixes):
    torch.manual_seed(0)
    model = RotatE(20, 3, 4)
    set_compile(False)
    eager = RankingEvaluator(batch_size=4).evaluate(model, *triples())
    set_compile(True)
    result = RankingEvaluator(batch_size=4, progress=True).evaluate(model, *triples())
    msg = evaluator.COMPILING_MESSAGE
    assert 'compiling' in msg and 'once' in msg
    # said before the first batch is done (the kernels compile within it), cleared after
    assert postfixes[0] == (0, msg)
    assert all(n == 0 for n, s in postfixes if s == msg)
    assert postfixes[-1] == (0, '')
    assert torch.equal(result.optimistic, eager.optimistic)
    assert torch.equal(result.pessimistic, eager.pessimistic)
    # compiled now: later evaluations say nothing
    postfixes.clear()
    RankingEvaluator(batch_size=4, progress=True).evaluate(model, *triples())
    assert postfixes == []
    assert compile_state._listeners == []


def test_no_message_without_progress_or_compilation(fresh, postfixes):
    model = RotatE(20, 3, 4)
    set_compile(True)
    RankingEvaluator(batch_size=4).evaluate(model, *triples())  # no bar: nobody listens
    assert postfixes == []
    compile_state._compiled.clear()
    set_compile(False)
    RankingEvaluator(batch_size=4, progress=True).evaluate(model, *triples())  # eager
    assert postfixes == []
