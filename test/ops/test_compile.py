r"""The compile machinery of :mod:`torch_mmkg.ops` (fallback, warning, notices), the eager
formulation of the RotatE 1-vs-all kernel, and the package's place in the layering."""
import ast
import os
import subprocess
import sys
import warnings

import pytest
import torch

import torch_mmkg.ops as ops
import torch_mmkg.ops.compile as compile_state
from torch_mmkg.testing import fresh_compile_state
import torch_mmkg.ops.pairwise as pairwise
from torch_mmkg.ops import (CompileUnavailableWarning, compile_notice, complex_modulus_sum,
                            gather_modulus_sum, lp_distance, rank_counts, set_compile,
                            will_compile)

OPS_DIR = os.path.dirname(ops.__file__)


@pytest.fixture
def fresh(monkeypatch):
    r"""A process in which nothing was compiled, failed or warned yet (restored after)."""
    fresh_compile_state(monkeypatch)


def naive(q_re, q_im, e_re, e_im):
    q, e = torch.complex(q_re, q_im), torch.complex(e_re, e_im)
    return (q[:, None] - e[None]).abs().sum(-1)


def rand_complex(B, N, d, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, dtype=dtype, generator=gen) for n in (B, B, N, N))


def compile_warnings(record):
    return [w for w in record if issubclass(w.category, CompileUnavailableWarning)]


# Layering #####################################################################################


def test_import_ops_imports_no_nn():
    code = ('import sys, torch_mmkg.ops; '
            'print(" ".join(m for m in sys.modules if m.startswith("torch_mmkg")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(OPS_DIR)))
    modules = out.stdout.split()
    assert 'torch_mmkg.ops' in modules
    assert not [m for m in modules if m.startswith(('torch_mmkg.nn', 'torch_mmkg.evaluation',
                                                    'torch_mmkg.training'))]


def test_ops_sources_import_only_torch_and_the_standard_library():
    for name in sorted(os.listdir(OPS_DIR)):
        if not name.endswith('.py'):
            continue
        with open(os.path.join(OPS_DIR, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not node.module.startswith('torch_mmkg'), (name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith('torch_mmkg') for a in node.names), name


def test_nn_kernels_is_an_alias_of_ops():
    import torch_mmkg.nn.kernels as kernels
    assert kernels.__all__ == ops.__all__
    for name in ops.__all__:
        assert getattr(kernels, name) is getattr(ops, name)
    # it defines nothing itself: every public name comes from torch_mmkg.ops
    public = [n for n in vars(kernels) if not n.startswith('_')]
    assert sorted(public) == sorted(ops.__all__)
    assert 'compatibility' in kernels.__doc__


# The eager RotatE 1-vs-all kernel #############################################################


@pytest.mark.parametrize('B,N,d', [(1, 1, 1), (5, 9, 4), (37, 301, 250), (3, 130, 7)])
def test_complex_modulus_sum_eager_equals_naive(monkeypatch, B, N, d):
    monkeypatch.setattr(compile_state, '_mode', '0')
    args = rand_complex(B, N, d, seed=B + N)
    out = complex_modulus_sum(*args)
    assert out.shape == (B, N)
    assert torch.allclose(out, naive(*args), atol=1e-12, rtol=1e-12)
    # the same operations as the plain real formula: the same values to the last bit
    q_re, q_im, e_re, e_im = args
    plain = torch.sqrt((q_re[:, None] - e_re[None])**2 + (q_im[:, None] - e_im[None])**2)
    assert torch.equal(out, plain.sum(-1))


def test_complex_modulus_sum_eager_is_differentiable(monkeypatch):
    # 1-N training scores all entities with gradients: the in-place tiles step aside.
    monkeypatch.setattr(compile_state, '_mode', '0')
    args = [x.requires_grad_() for x in rand_complex(6, 70, 5, seed=3)]
    complex_modulus_sum(*args).square().sum().backward()
    got = [x.grad for x in args]
    ref = [x.detach().clone().requires_grad_() for x in args]
    naive(*ref).square().sum().backward()
    for a, b in zip(got, ref):
        assert torch.allclose(a, b.grad, atol=1e-10)


@pytest.mark.parametrize('dtype,tile', [(torch.float32, (65, 64)), (torch.float64, (32, 64))])
def test_complex_modulus_sum_tiles_stay_in_cache(monkeypatch, dtype, tile):
    # Entities in blocks of 64, reused by as many queries as 4 MiB per intermediate allow,
    # all tiles written into one scratch allocation.
    monkeypatch.setattr(compile_state, '_mode', '0')
    shapes = []
    base = pairwise._EAGER['complex']

    def recording(*args):
        shapes.append((args[0].size(0), args[2].size(0)))
        return base(*args)

    monkeypatch.setitem(pairwise._EAGER, 'complex', recording)
    allocations = []
    new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, 'new_empty', lambda self, *size, **kwargs: (
        allocations.append(size) or new_empty(self, *size, **kwargs)))
    args = rand_complex(100, 150, 250, dtype=dtype)
    out = complex_modulus_sum(*args)
    assert shapes[0] == tile and len(shapes) == -(-100 // tile[0]) * 3
    assert max(b * n for b, n in shapes) * 250 * out.element_size() <= 2**22
    assert allocations == [(100, 150), (2 * tile[0] * tile[1] * 250, )]  # output, scratch
    assert torch.allclose(out, naive(*args).to(dtype), atol=1e-3 if dtype == torch.float32
                          else 1e-12)


# torch.compile unavailable or failing #########################################################


def test_compile_unavailable_warns_once(fresh, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('Dynamo is not supported here\nsecond line of the traceback')

    monkeypatch.setattr(torch, 'compile', broken)
    set_compile(True)
    args = rand_complex(4, 7, 3)
    q, e = torch.randn(4, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        for _ in range(3):
            assert torch.allclose(complex_modulus_sum(*args), naive(*args), atol=1e-12)
            assert torch.allclose(lp_distance(q, e, 1.0),
                                  (q[:, None] - e[None]).abs().sum(-1), atol=1e-12)
            scores = torch.tensor([[1.0, 2.0, 2.0], [0.0, 1.0, 3.0]])
            assert [x.tolist() for x in rank_counts(scores, scores[:, 1])] == [
                [0, 1], [2, 2], [0, 0]]
    caught = compile_warnings(record)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert 'the complex kernel' in message
    assert 'RuntimeError: Dynamo is not supported here' in message
    assert 'second line' not in message
    assert 'falls back to eager tiles' in message and 'slower' in message
    assert compile_state._failed


def test_compile_failing_on_first_call_falls_back_to_eager_tiles(fresh, monkeypatch):
    # torch.compile compiles lazily: a missing C++ compiler shows on the first call. The
    # fused tile (all entities at once) then runs in bounded eager tiles, and only once
    # warns; later calls go straight to eager.
    def lazy_failure(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError('InductorError: no C++ compiler found')
        return compiled

    monkeypatch.setattr(torch, 'compile', lazy_failure)
    monkeypatch.setattr(pairwise, '_MAX_ELEMENTS', 40)
    tiles = []
    base = pairwise._EAGER['complex']
    monkeypatch.setitem(pairwise._EAGER, 'complex', lambda *a: tiles.append(1) or base(*a))
    set_compile(True)
    args = rand_complex(5, 30, 4)
    table = torch.randn(30, 8, dtype=torch.float64)
    index = torch.randint(0, 30, (5, 6))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        for _ in range(3):
            assert torch.allclose(complex_modulus_sum(*args), naive(*args), atol=1e-12)
        got = gather_modulus_sum(args[0], args[1], table, index)
    assert len(compile_warnings(record)) == 1
    assert 'no C++ compiler found' in str(compile_warnings(record)[0].message)
    assert len(tiles) == 3 * 5 * 3  # 5 queries x 3 blocks of 10 entities, three calls
    ref = naive(args[0], args[1], table[:, :4], table[:, 4:]).gather(1, index)
    assert torch.allclose(got, ref, atol=1e-12)


def test_bad_inputs_raise_without_disabling_compilation(fresh, monkeypatch):
    # An error of the eager kernel too is the caller's: it propagates, nothing is disabled.
    monkeypatch.setattr(torch, 'compile', lambda fn, **kwargs: fn)
    set_compile(True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        with pytest.raises(RuntimeError):
            rank_counts(torch.zeros(3, 4), torch.zeros(2))
    assert not compile_warnings(record)
    assert not compile_state._failed


# Knowing when a kernel compiles ###############################################################


def test_will_compile(fresh, monkeypatch):
    monkeypatch.setattr(torch, 'compile', lambda fn, **kwargs: fn)  # instant "compilation"
    x = torch.zeros(1)
    set_compile(False)
    assert not will_compile('complex', x, 2**40)
    set_compile('auto')
    assert not will_compile('complex', x, 1)
    assert will_compile('complex', x, compile_state.AUTO_COMPILE_ELEMENTS)
    set_compile(True)
    assert will_compile('complex', x, 1) and will_compile('l1', x, 1)
    complex_modulus_sum(*rand_complex(2, 3, 4))
    assert not will_compile('complex', x, 1)  # compiled once in this process
    assert will_compile('l1', x, 1)


def test_compile_notice(fresh, monkeypatch):
    monkeypatch.setattr(torch, 'compile', lambda fn, **kwargs: fn)
    set_compile(True)
    heard = []
    args = rand_complex(2, 3, 4)
    with compile_notice(heard.append):
        complex_modulus_sum(*args)
        complex_modulus_sum(*args)
        assert heard == ['complex']
        lp_distance(args[0], args[2], 1.0)
        assert heard == ['complex', 'l1']
    rank_counts(torch.zeros(2, 3), torch.zeros(2))  # outside the block: nobody is told
    assert heard == ['complex', 'l1']
    assert compile_state._listeners == []
