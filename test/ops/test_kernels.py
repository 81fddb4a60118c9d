import warnings

import pytest
import torch

import torch_mmkg.ops.compile as compile_state
import torch_mmkg.ops.gather as gather
import torch_mmkg.ops.pairwise as pairwise
import torch_mmkg.ops.rank as rank
from torch_mmkg.nn import RotatEInteraction
from torch_mmkg.ops import (CompileUnavailableWarning, compiled_forward, complex_modulus_sum,
                            lp_distance, rank_counts, set_compile)
from torch_mmkg.testing import onlyFullTest

DTYPE = torch.float64


@pytest.fixture
def eager(monkeypatch):
    r"""Forces the eager kernels (whatever TORCH_MMKG_COMPILE says) and restores the mode."""
    monkeypatch.setattr(compile_state, '_mode', '0')
    monkeypatch.setattr(compile_state, '_failed', False)


def naive_complex_modulus_sum(q_re, q_im, e_re, e_im):
    q, e = torch.complex(q_re, q_im), torch.complex(e_re, e_im)
    return (q[:, None, :] - e[None, :, :]).abs().sum(-1)


def naive_lp(q, e, p):
    return (q[:, None, :] - e[None, :, :]).abs().pow(p).sum(-1).pow(1.0 / p)


def rand_complex(B, N, d, dtype=DTYPE):
    return (torch.randn(B, d, dtype=dtype), torch.randn(B, d, dtype=dtype),
            torch.randn(N, d, dtype=dtype), torch.randn(N, d, dtype=dtype))


def test_complex_modulus_sum(eager):
    torch.manual_seed(0)
    args = rand_complex(5, 9, 4)
    out = complex_modulus_sum(*args)
    assert out.shape == (5, 9) and out.dtype == DTYPE
    assert torch.allclose(out, naive_complex_modulus_sum(*args), atol=1e-12, rtol=0)


def test_complex_modulus_sum_hand_example(eager):
    # |(1 + 2i) - (4 + 6i)| + |0 - 0| = 5
    one = torch.tensor([[1.0, 0.0]])
    out = complex_modulus_sum(one, torch.tensor([[2.0, 0.0]]), torch.tensor([[4.0, 0.0]]),
                              torch.tensor([[6.0, 0.0]]))
    assert out.tolist() == [[5.0]]


@pytest.mark.parametrize('max_elements,d,tiles', [
    (20, 4, 7 * 3),  # N is split into tiles of 5, 5, 3 entities, one query per tile
    (150, 4, 4),  # all 13 entities per tile, B split into 2, 2, 2, 1 queries
    (1, 3, 7 * 13),  # degenerate budget: one (query, entity) pair per tile
])
def test_complex_modulus_sum_tiling(eager, monkeypatch, max_elements, d, tiles):
    torch.manual_seed(1)
    B, N = 7, 13
    calls = []
    base = pairwise._EAGER['complex']

    def counting(*args):
        calls.append(tuple(args[0].shape) + tuple(args[2].shape))
        return base(*args)

    monkeypatch.setattr(pairwise, '_MAX_ELEMENTS', max_elements)
    monkeypatch.setitem(pairwise._EAGER, 'complex', counting)
    args = rand_complex(B, N, d)
    out = complex_modulus_sum(*args)
    assert len(calls) == tiles
    assert torch.allclose(out, naive_complex_modulus_sum(*args), atol=1e-12, rtol=0)


@pytest.mark.parametrize('p', [1.0, 2.0, 3.0])
def test_lp_distance(eager, p):
    torch.manual_seed(2)
    q, e = torch.randn(6, 5, dtype=DTYPE), torch.randn(11, 5, dtype=DTYPE)
    out = lp_distance(q, e, p)
    assert out.shape == (6, 11) and out.dtype == DTYPE
    assert torch.allclose(out, naive_lp(q, e, p), atol=1e-12, rtol=0)


def test_lp_distance_exact_for_near_duplicates(eager):
    # No |a|² + |b|² - 2ab expansion: a point at distance 1e-2 of a query with large norm
    # keeps its exact distance (the expansion would lose it to cancellation in float32).
    q = torch.full((1, 4), 1000.0)
    e = torch.cat([q, q + torch.tensor([1e-2, 0.0, 0.0, 0.0])])
    out = lp_distance(q, e, 2.0)
    assert out[0, 0].item() == 0.0
    assert abs(out[0, 1].item() - 1e-2) < 1e-4


def test_lp_distance_tiled_fused_path(monkeypatch):
    # The L1 path that a compiled kernel takes (one output tile per query block), with an
    # eager stand-in for the compiled function.
    monkeypatch.setattr(pairwise, '_kernel', lambda name, x, work: (
        lambda *args: pairwise._EAGER[name](*args)))
    torch.manual_seed(3)
    q, e = torch.randn(6, 5, dtype=DTYPE), torch.randn(11, 5, dtype=DTYPE)
    assert torch.allclose(lp_distance(q, e, 1.0), naive_lp(q, e, 1), atol=1e-12, rtol=0)
    args = rand_complex(6, 11, 5)
    assert torch.allclose(complex_modulus_sum(*args), naive_complex_modulus_sum(*args),
                          atol=1e-12, rtol=0)


def test_empty_inputs(eager):
    q, e = torch.randn(0, 3), torch.randn(4, 3)
    assert lp_distance(q, e, 1.0).shape == (0, 4)
    assert complex_modulus_sum(q, q, e, e).shape == (0, 4)


@pytest.mark.parametrize('mode', ['yes', 'AUTO', '1', None, 2, 'compile'])
def test_set_compile_rejects_bad_values(monkeypatch, mode):
    monkeypatch.setattr(compile_state, '_mode', compile_state._mode)
    with pytest.raises(ValueError, match='compile mode'):
        set_compile(mode)


def test_set_compile_modes(monkeypatch):
    monkeypatch.setattr(compile_state, '_mode', compile_state._mode)
    monkeypatch.setattr(compile_state, '_failed', False)
    x = torch.zeros(1)
    set_compile(False)
    assert not compile_state._want_compile(x, 2**40)
    set_compile(True)
    assert compile_state._want_compile(x, 1)
    set_compile('auto')
    assert not compile_state._want_compile(x, 1)
    assert compile_state._want_compile(x, compile_state.AUTO_COMPILE_ELEMENTS)
    # Small training calls never compile in auto mode: compiled_forward is the module.
    module = RotatEInteraction()
    assert compiled_forward(module, x, 1) is module


def test_set_compile_overrides_environment(monkeypatch):
    monkeypatch.setattr(compile_state, '_mode', None)
    monkeypatch.setattr(compile_state, '_failed', False)
    monkeypatch.setenv('TORCH_MMKG_COMPILE', '1')
    assert compile_state._want_compile(torch.zeros(1), 1)
    set_compile(False)
    assert not compile_state._want_compile(torch.zeros(1), 1)


@onlyFullTest
def test_compiled_kernels_match_eager(monkeypatch):
    monkeypatch.setattr(compile_state, '_mode', compile_state._mode)
    monkeypatch.setattr(compile_state, '_failed', False)
    torch.manual_seed(4)
    args = rand_complex(7, 13, 6, dtype=torch.float32)
    q, e = torch.randn(7, 6), torch.randn(13, 6)
    module = RotatEInteraction()
    h, r, t = torch.randn(7, 1, 12), torch.randn(7, 1, 6), torch.randn(7, 5, 12)
    try:
        set_compile(True)
        with warnings.catch_warnings():
            # A failed compilation falls back to eager with a warning; fail instead.
            warnings.simplefilter('error', CompileUnavailableWarning)
            out_complex = complex_modulus_sum(*args)
            out_l1 = lp_distance(q, e, 1.0)
            out_module = compiled_forward(module, h, 10**9)(h, r, t)
            scores = torch.randint(0, 3, (9, 11)).float()
            scores[2, 4] = float('nan')
            out_ranks = rank_counts(scores, scores[:, 0])
            table = torch.randn(13, 12, requires_grad=True)
            qg = torch.randn(7, 6, requires_grad=True)
            index = torch.randint(0, 13, (7, 4))
            gathered = gather.gather_modulus_sum(qg, qg * 2, table, index)
            gathered.sum().backward()
        assert not compile_state._failed
    finally:
        set_compile('auto')
    assert torch.allclose(out_complex, naive_complex_modulus_sum(*args), atol=1e-4)
    assert torch.allclose(out_l1, naive_lp(q, e, 1), atol=1e-4)
    assert torch.allclose(out_module, module(h, r, t), atol=1e-4)
    ref = rank._rank_counts_eager(scores, scores[:, 0])
    assert all(torch.equal(a, b) for a, b in zip(out_ranks, ref))
    assert int(out_ranks[2][2]) == 1
    t2, q2 = table.detach().requires_grad_(), qg.detach().requires_grad_()
    eager = gather._gather_modulus_sum(q2, q2 * 2, t2, index)
    eager.sum().backward()
    assert torch.allclose(gathered, eager, atol=1e-4)
    assert torch.allclose(table.grad, t2.grad, atol=1e-4)
    assert torch.allclose(qg.grad, q2.grad, atol=1e-4)


def test_gather_modulus_sum_manual_backward(monkeypatch):
    # The hand-written backward of the fused kernel (run here without compilation) gives the
    # gradients autograd derives from the plain formula, for queries and the table.
    monkeypatch.setattr(gather, '_fused', lambda name, eager: eager)
    torch.manual_seed(5)
    B, K, d, N = 4, 6, 5, 9
    q_re, q_im = torch.randn(B, d, dtype=DTYPE), torch.randn(B, d, dtype=DTYPE)
    table = torch.randn(N, 2 * d, dtype=DTYPE)
    index = torch.randint(0, N, (B, K))
    index[0, :2] = 3  # repeated candidates accumulate
    g = torch.randn(B, K, dtype=DTYPE)
    grads = []
    for fn in (gather._GatherModulusSum.apply, gather._gather_modulus_sum):
        a, b, c = (x.clone().requires_grad_() for x in (q_re, q_im, table))
        out = fn(a, b, c, index)
        (out * g).sum().backward()
        grads.append((out.detach(), a.grad, b.grad, c.grad))
    ref = naive_complex_modulus_sum(q_re, q_im, table[:, :d], table[:, d:])
    assert torch.allclose(grads[1][0], ref.gather(1, index), atol=1e-12)
    for x, y in zip(*grads):
        assert torch.allclose(x, y, atol=1e-10)


def test_weighted_gather_modulus_sum_manual_backward(monkeypatch):
    # The fused relation-guided candidate kernel: its value is the plain formula (each
    # candidate the weighted sum of its stacked representations) and its hand-written
    # backward gives autograd's gradients for queries, stack and weights.
    monkeypatch.setattr(gather, '_fused', lambda name, eager: eager)
    torch.manual_seed(6)
    B, K, S, d, N = 4, 5, 3, 4, 7
    q_re, q_im = torch.randn(B, d, dtype=DTYPE), torch.randn(B, d, dtype=DTYPE)
    stack = torch.randn(N, S, 2 * d, dtype=DTYPE)
    w = torch.softmax(torch.randn(B, K, S, dtype=DTYPE), dim=-1)
    index = torch.randint(0, N, (B, K))
    index[1, :3] = 2  # repeated candidates accumulate
    g = torch.randn(B, K, dtype=DTYPE)
    grads = []
    for fn in (gather._WeightedGatherModulusSum.apply, gather._weighted_gather_modulus_sum):
        a, b, c, ww = (x.clone().requires_grad_() for x in (q_re, q_im, stack, w))
        out = fn(a, b, c, ww, index)
        (out * g).sum().backward()
        grads.append((out.detach(), a.grad, b.grad, c.grad, ww.grad))
    ref = torch.empty(B, K, dtype=DTYPE)
    for i in range(B):
        for k in range(K):
            cand = (w[i, k, :, None] * stack[index[i, k]]).sum(0)
            ref[i, k] = torch.sqrt((q_re[i] - cand[:d])**2 + (q_im[i] - cand[d:])**2).sum()
    assert torch.allclose(grads[1][0], ref, atol=1e-12)
    for x, y in zip(*grads):
        assert torch.allclose(x, y, atol=1e-10)


@onlyFullTest
def test_weighted_gather_compiled_matches_eager(monkeypatch):
    monkeypatch.setattr(compile_state, '_failed', False)
    torch.manual_seed(7)
    q_re, q_im = torch.randn(6, 5), torch.randn(6, 5)
    stack, w = torch.randn(11, 3, 10), torch.softmax(torch.randn(6, 4, 3), -1)
    index = torch.randint(0, 11, (6, 4))
    outs = []
    for mode in (True, False):
        set_compile(mode)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('error', CompileUnavailableWarning)
                xs = [x.clone().requires_grad_() for x in (q_re, q_im, stack, w)]
                out = gather.weighted_gather_modulus_sum(*xs, index)
                out.square().sum().backward()
        finally:
            set_compile('auto')
        outs.append([out.detach()] + [x.grad for x in xs])
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-4)
