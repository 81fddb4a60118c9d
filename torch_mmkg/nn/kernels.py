r"""Pairwise distance kernels behind the 1-vs-all scoring of distance-based interactions.

Scoring a batch of :math:`B` queries against all :math:`N` entities with a distance that does
not reduce to a matrix product (the sum of complex moduli of RotatE, the :math:`L_1` distance)
costs :math:`O(B N d)` element operations. A naive broadcast materialises :math:`[B, N, d]`
intermediates several times and is memory bound; these kernels either tile the work so that
intermediates stay bounded, or, on CPU for large problems, hand it to :func:`torch.compile`,
which fuses the whole reduction into one vectorised loop (about 20× faster on CPU).

Compilation is controlled by :func:`set_compile` or the environment variable
:obj:`TORCH_MMKG_COMPILE` (:obj:`"auto"`, :obj:`"1"`, :obj:`"0"`). In :obj:`"auto"` mode
(the default) the fused kernel is used on CPU only when one call has more than
:obj:`AUTO_COMPILE_ELEMENTS` element operations, so small problems (and the test-suite) never
pay the compilation time of a few seconds. Any failure to compile (no C++ compiler, an
unsupported platform) falls back to the tiled eager kernel with a warning.
"""
import os
import warnings
import weakref
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['set_compile', 'compiled_forward', 'complex_modulus_sum', 'gather_modulus_sum',
           'weighted_gather_modulus_sum',
           'lp_distance', 'rank_counts']

AUTO_COMPILE_ELEMENTS = 2**28
#: Once a kernel is compiled, calls above this many element operations reuse it.
AUTO_COMPILE_REUSE_ELEMENTS = 2**20
#: Element operations of one training scoring call above which it is compiled on CPU.
AUTO_COMPILE_TRAIN_ELEMENTS = 2**22
_MAX_ELEMENTS = 2**24  # element budget of one eager tile ([b, n, d] intermediates)

_mode: Optional[str] = None
_compiled: Dict[str, Callable] = {}
_failed = False


def set_compile(mode) -> None:
    r"""Sets when the fused kernels are compiled: :obj:`"auto"`, :obj:`True` or
    :obj:`False` (overrides :obj:`TORCH_MMKG_COMPILE`)."""
    global _mode
    if mode not in ('auto', True, False):
        raise ValueError(f"compile mode must be 'auto', True or False, got {mode!r}")
    _mode = {True: '1', False: '0'}.get(mode, mode)


def _want_compile(x: Tensor, work: int, threshold: int = AUTO_COMPILE_ELEMENTS) -> bool:
    mode = _mode if _mode is not None else os.getenv('TORCH_MMKG_COMPILE', 'auto')
    if _failed or mode == '0':
        return False
    if mode == '1':
        return True
    return x.device.type == 'cpu' and work >= threshold


_compiled_modules = weakref.WeakKeyDictionary()


def compiled_forward(module: torch.nn.Module, x: Tensor, work: int) -> Callable:
    r"""The forward of :obj:`module`, compiled by :func:`torch.compile` (forward and
    backward fused) when the compile mode asks for it for a training call of :obj:`work`
    element operations, else the plain forward. Used for the :math:`[B, K, d]` candidate
    scoring of negative-sampling training."""
    if not _want_compile(x, work, AUTO_COMPILE_TRAIN_ELEMENTS):
        return module
    fn = _compiled_modules.get(module)
    if fn is None:
        fn = torch.compile(module.forward, dynamic=True)
        _compiled_modules[module] = fn
    return _with_fallback(fn, module, module.__class__.__name__)


def _with_fallback(compiled: Callable, eager: Callable, name: str) -> Callable:
    r"""Runs :obj:`compiled`; if compilation fails (no C++ compiler, an unsupported
    platform), warns once, disables compilation and runs :obj:`eager` instead."""
    def run(*args):
        global _failed
        try:
            return compiled(*args)
        except Exception as e:  # pragma: no cover - depends on the toolchain
            _failed = True
            warnings.warn(f"torch.compile of {name} failed ({type(e).__name__}: {e}); "
                          f"falling back to eager", RuntimeWarning)
            return eager(*args)
    return run


def _complex_modulus_sum_eager(q_re: Tensor, q_im: Tensor, e_re: Tensor,
                               e_im: Tensor) -> Tensor:
    return torch.sqrt((q_re[:, None] - e_re[None])**2 +
                      (q_im[:, None] - e_im[None])**2).sum(-1)


def _l1_eager(q: Tensor, e: Tensor) -> Tensor:
    return (q[:, None] - e[None]).abs().sum(-1)


def _rank_counts_eager(scores: Tensor, true: Tensor):
    t = true[:, None]
    return (scores > t).sum(1), (scores >= t).sum(1), torch.isnan(scores).sum(1)


_EAGER = {'complex': _complex_modulus_sum_eager, 'l1': _l1_eager,
          'ranks': _rank_counts_eager}
#: Score-matrix entries above which :func:`rank_counts` is compiled on CPU.
AUTO_COMPILE_RANK_ELEMENTS = 2**22


def _kernel(name: str, x: Tensor, work: int,
            threshold: int = AUTO_COMPILE_ELEMENTS) -> Callable:
    if name in _compiled:  # compiled already: worth it for much smaller calls too
        threshold = min(threshold, AUTO_COMPILE_REUSE_ELEMENTS)
    if not _want_compile(x, work, threshold):
        return _EAGER[name]
    if name not in _compiled:
        _compiled[name] = torch.compile(_EAGER[name], dynamic=True)
    return _with_fallback(_compiled[name], _EAGER[name], f'the {name} kernel')


def _tiled(fn: Callable, queries, entities, out: Tensor, d: int, fused: bool) -> Tensor:
    B, N = out.shape
    if fused:  # the fused kernel has no [b, n, d] intermediates: only bound the output tile
        b_step, n_step = max(1, min(B, 2**16)), N
    else:
        n_step = max(1, min(N, _MAX_ELEMENTS // max(d, 1)))
        b_step = max(1, _MAX_ELEMENTS // max(n_step * d, 1))
    for b0 in range(0, B, b_step):
        q = [x[b0:b0 + b_step] for x in queries]
        for n0 in range(0, N, n_step):
            e = [x[n0:n0 + n_step] for x in entities]
            out[b0:b0 + b_step, n0:n0 + n_step] = fn(*q, *e)
    return out


def complex_modulus_sum(q_re: Tensor, q_im: Tensor, e_re: Tensor, e_im: Tensor) -> Tensor:
    r"""Pairwise sums of complex moduli,

    .. math::
        \mathbf{D}_{b n} = \sum_{k=1}^{d} |q_{b k} - e_{n k}|, \qquad
        q, e \in \mathbb{C}^d,

    the distance of RotatE, given real and imaginary parts.

    Shapes:
        - **input:** :obj:`q_re`, :obj:`q_im` :math:`[B, d]`; :obj:`e_re`, :obj:`e_im`
          :math:`[N, d]`
        - **output:** :math:`[B, N]`
    """
    B, d = q_re.shape
    N = e_re.size(0)
    fn = _kernel('complex', q_re, B * N * d)
    out = q_re.new_empty(B, N)
    return _tiled(fn, (q_re, q_im), (e_re, e_im), out, d, fn is not _EAGER['complex'])


def rank_counts(scores: Tensor, true: Tensor):
    r"""Per row :math:`b` of a score matrix, the number of entries greater than
    :obj:`true[b]`, greater or equal, and NaN, in one fused pass when compiled.

    Shapes:
        - **input:** :obj:`scores` :math:`[B, N]`, :obj:`true` :math:`[B]`
        - **output:** three :math:`[B]` long tensors
    """
    fn = _kernel('ranks', scores, scores.numel(), AUTO_COMPILE_RANK_ELEMENTS)
    return fn(scores, true)


def _candidate_modulus_sum(q_re: Tensor, q_im: Tensor, c: Tensor) -> Tensor:
    # sum_j |q_bj - c_bkj| for per-query candidates c [B, K, 2d] (real, then imaginary parts)
    d = q_re.size(-1)
    return torch.sqrt((q_re[:, None] - c[..., :d])**2 + (q_im[:, None] - c[..., d:])**2).sum(-1)


def _candidate_modulus_grad(g: Tensor, q_re: Tensor, q_im: Tensor, c: Tensor) -> Tensor:
    # d/dc |q - c| = -(q - c) / |q - c| (0 where q = c); returned as +g (q - c) / |q - c|.
    d = q_re.size(-1)
    dr, di = q_re[:, None] - c[..., :d], q_im[:, None] - c[..., d:]
    m = torch.sqrt(dr * dr + di * di)
    w = torch.where(m > 0, g[..., None] / m, torch.zeros_like(m))
    return torch.cat([w * dr, w * di], dim=-1)


def _gather_modulus_sum(q_re: Tensor, q_im: Tensor, table: Tensor, index: Tensor) -> Tensor:
    return _candidate_modulus_sum(q_re, q_im, table[index])


def _gather_modulus_sum_grad(g: Tensor, q_re: Tensor, q_im: Tensor, table: Tensor,
                             index: Tensor) -> Tensor:
    return _candidate_modulus_grad(g, q_re, q_im, table[index])


class _GatherModulusSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_re, q_im, table, index):
        ctx.save_for_backward(q_re, q_im, table, index)
        return _fused('gather_fwd', _gather_modulus_sum)(q_re, q_im, table, index)

    @staticmethod
    def backward(ctx, g):
        q_re, q_im, table, index = ctx.saved_tensors
        grad_c = _fused('gather_bwd', _gather_modulus_sum_grad)(g.contiguous(), q_re, q_im,
                                                                table, index)
        grad_q = grad_c.sum(dim=1)
        d = q_re.size(-1)
        grad_table = torch.zeros_like(table).index_add_(
            0, index.reshape(-1), grad_c.reshape(-1, table.size(-1)), alpha=-1.0)
        return grad_q[:, :d], grad_q[:, d:], grad_table, None


def _fused(name: str, eager: Callable) -> Callable:
    if name not in _compiled:
        _compiled[name] = torch.compile(eager, dynamic=True)
    return _with_fallback(_compiled[name], eager, f'the {name} kernel')


def gather_modulus_sum(q_re: Tensor, q_im: Tensor, table: Tensor, index: Tensor) -> Tensor:
    r"""Sums of complex moduli between each query and its own candidates,

    .. math::
        \mathbf{D}_{b k} = \sum_{j=1}^{d} |q_{b j} - e_{\mathrm{index}[b, k],\, j}|,

    reading the candidates straight from :obj:`table` (real parts, then imaginary parts):
    when compiled, the forward pass never materialises the :math:`[B, K, 2d]` candidates and
    the backward pass writes them once, for one :func:`~torch.Tensor.index_add_` into the
    table's gradient. Differentiable in :obj:`q_re`, :obj:`q_im` and :obj:`table`.

    Shapes:
        - **input:** :obj:`q_re`, :obj:`q_im` :math:`[B, d]`, :obj:`table` :math:`[N, 2d]`,
          :obj:`index` :math:`[B, K]`
        - **output:** :math:`[B, K]`
    """
    if _want_compile(q_re, index.numel() * q_re.size(-1), AUTO_COMPILE_TRAIN_ELEMENTS):
        return _GatherModulusSum.apply(q_re, q_im, table, index)
    return _gather_modulus_sum(q_re, q_im, table, index)


def _weighted_gather(stack: Tensor, w: Tensor, index: Tensor) -> Tensor:
    c = w[..., 0, None] * stack[:, 0][index]
    for s in range(1, stack.size(1)):
        c = c + w[..., s, None] * stack[:, s][index]
    return c


def _weighted_gather_modulus_sum(q_re: Tensor, q_im: Tensor, stack: Tensor, w: Tensor,
                                 index: Tensor) -> Tensor:
    return _candidate_modulus_sum(q_re, q_im, _weighted_gather(stack, w, index))


def _weighted_gather_grad(g: Tensor, q_re: Tensor, q_im: Tensor, stack: Tensor, w: Tensor,
                          index: Tensor) -> Tuple[Tensor, Tensor]:
    # the candidates' gradient (as in _candidate_modulus_grad) and the weights' gradient
    # -<grad_c, stack[index, s]> per slot
    grad_c = _candidate_modulus_grad(g, q_re, q_im, _weighted_gather(stack, w, index))
    grad_w = torch.stack([-(grad_c * stack[:, s][index]).sum(-1)
                          for s in range(stack.size(1))], dim=-1)
    return grad_c, grad_w


class _WeightedGatherModulusSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_re, q_im, stack, w, index):
        ctx.save_for_backward(q_re, q_im, stack, w, index)
        return _fused('wgather_fwd', _weighted_gather_modulus_sum)(q_re, q_im, stack, w, index)

    @staticmethod
    def backward(ctx, g):
        q_re, q_im, stack, w, index = ctx.saved_tensors
        grad_c, grad_w = _fused('wgather_bwd', _weighted_gather_grad)(
            g.contiguous(), q_re, q_im, stack, w, index)
        grad_q = grad_c.sum(dim=1)
        d = q_re.size(-1)
        grad_stack = None
        if ctx.needs_input_grad[2]:
            grad_stack = torch.zeros_like(stack)
            flat, gc = index.reshape(-1), grad_c.reshape(-1, stack.size(-1))
            for s in range(stack.size(1)):  # one index_add_ per slot, no [B, K, S, 2d]
                grad_stack[:, s].index_add_(0, flat, gc * w[..., s].reshape(-1, 1),
                                            alpha=-1.0)
        return grad_q[:, :d], grad_q[:, d:], grad_stack, grad_w, None


def weighted_gather_modulus_sum(q_re: Tensor, q_im: Tensor, stack: Tensor, w: Tensor,
                                index: Tensor) -> Tensor:
    r"""Sums of complex moduli between each query and its own candidates, each candidate a
    weighted sum of its stacked representations (a fusion whose weights depend on the query,
    such as NATIVE's relation-guided one),

    .. math::
        \mathbf{D}_{b k} = \sum_{j=1}^{d} \Big|q_{b j} - \sum_{s} w_{b k s}\,
        \mathbf{S}_{\mathrm{index}[b, k],\, s,\, j}\Big|.

    When compiled, neither pass materialises the :math:`[B, K, S, 2d]` gathered stacks; the
    backward pass writes the candidates' gradient once and adds it into the stack's gradient
    with one :func:`~torch.Tensor.index_add_` per slot. Differentiable in :obj:`q_re`,
    :obj:`q_im`, :obj:`stack` and :obj:`w`.

    Shapes:
        - **input:** :obj:`q_re`, :obj:`q_im` :math:`[B, d]`, :obj:`stack`
          :math:`[N, S, 2d]`, :obj:`w` :math:`[B, K, S]`, :obj:`index` :math:`[B, K]`
        - **output:** :math:`[B, K]`
    """
    work = index.numel() * stack.size(1) * q_re.size(-1)
    if _want_compile(q_re, work, AUTO_COMPILE_TRAIN_ELEMENTS):
        return _WeightedGatherModulusSum.apply(q_re, q_im, stack, w, index)
    return _weighted_gather_modulus_sum(q_re, q_im, stack, w, index)


def lp_distance(q: Tensor, e: Tensor, p: float) -> Tensor:
    r"""Pairwise :math:`L_p` distances :math:`\|\mathbf{q}_b - \mathbf{e}_n\|_p` of the rows
    of :obj:`q` (:math:`[B, d]`) and :obj:`e` (:math:`[N, d]`), computed exactly (no
    :math:`\|a\|^2 + \|b\|^2 - 2ab` expansion, whose cancellation would perturb rankings)."""
    B, d = q.shape
    N = e.size(0)
    if p == 1:
        fn = _kernel('l1', q, B * N * d)
        if fn is not _EAGER['l1']:
            return _tiled(fn, (q, ), (e, ), q.new_empty(B, N), d, True)
    return torch.cdist(q.unsqueeze(0), e.unsqueeze(0), p=p,
                       compute_mode='donot_use_mm_for_euclid_dist').squeeze(0)
