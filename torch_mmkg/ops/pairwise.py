r"""Pairwise distance kernels behind the 1-vs-all scoring of distance-based interactions.

Scoring a batch of :math:`B` queries against all :math:`N` entities with a distance that does
not reduce to a matrix product (the sum of complex moduli of RotatE, the :math:`L_1` distance)
costs :math:`O(B N d)` element operations. A naive broadcast materialises :math:`[B, N, d]`
intermediates several times and is memory bound. Eagerly, these kernels block the work over
queries and entities so that the :math:`[b, n, d]` intermediates of one tile stay in the CPU
caches and are updated in place; on CPU for large problems they hand it to
:func:`torch.compile` instead, which fuses the whole reduction into one vectorised loop (see
:mod:`torch_mmkg.ops.compile`).
"""
import contextlib
import threading
from typing import Callable, Iterator, Sequence, Tuple

import torch
from torch import Tensor

from .compile import AUTO_COMPILE_ELEMENTS, kernel

__all__ = ['complex_modulus_sum', 'lp_distance']

#: Element budget of one eager tile on CPU (each :math:`[b, n, d]` intermediate) ...
_MAX_ELEMENTS = 2**20
#: ... and its byte budget (4 MiB: the two intermediates of a tile stay in the last-level
#: cache; fewer, larger tiles pay less per-operation overhead).
_MAX_TILE_BYTES = 2**22
#: Entities per eager CPU tile at most: the rest of the element budget goes to queries, so
#: that each block of entities is reused by many queries while it is in the cache.
_ENTITY_BLOCK = 64
#: Element budget of one eager tile on accelerators: few, large tiles (few kernel launches).
_DEVICE_MAX_ELEMENTS = 2**24

# The scratch memory of the eager tiles of the current call (per thread): written in place
# tile after tile, never allocated and freed per tile (which, at a few MiB, can make the
# allocator hand memory back to the system and fault it in again on every tile).
_scratch = threading.local()


@contextlib.contextmanager
def _tile_scratch(like: Tensor, numel: int) -> Iterator[None]:
    previous = getattr(_scratch, 'buffer', None)
    _scratch.buffer = like.new_empty(numel)
    try:
        yield
    finally:
        _scratch.buffer = previous


def _scratch_views(like: Tensor, shape: Tuple[int, int, int]):
    buffer = getattr(_scratch, 'buffer', None)
    numel = shape[0] * shape[1] * shape[2]
    if (buffer is None or buffer.numel() < 2 * numel or buffer.dtype != like.dtype
            or buffer.device != like.device):
        return None, None
    return buffer[:numel].view(shape), buffer[numel:2 * numel].view(shape)


def _complex_modulus_sum_eager(q_re: Tensor, q_im: Tensor, e_re: Tensor,
                               e_im: Tensor) -> Tensor:
    # One tile: two [b, n, d] intermediates, updated in place (in the call's scratch memory
    # where there is one); the same operations as the plain formula, so the same values to
    # the last bit.
    if q_re.requires_grad or e_re.requires_grad or q_im.requires_grad or e_im.requires_grad:
        if torch.is_grad_enabled():  # autograd keeps the intermediates: out of place
            return torch.sqrt(((q_re[:, None] - e_re[None])**2 +
                               (q_im[:, None] - e_im[None])**2).clamp_min(TINY)).sum(-1)
    shape = (q_re.size(0), e_re.size(0), q_re.size(1))
    dr, di = _scratch_views(q_re, shape)
    dr = torch.sub(q_re[:, None], e_re[None], out=dr)
    di = torch.sub(q_im[:, None], e_im[None], out=di)
    return dr.mul_(dr).add_(di.mul_(di)).clamp_min_(TINY).sqrt_().sum(-1)


def _l1_eager(q: Tensor, e: Tensor) -> Tensor:
    return (q[:, None] - e[None]).abs().sum(-1)


def _complex_modulus_sum_formula(q_re: Tensor, q_im: Tensor, e_re: Tensor,
                                 e_im: Tensor) -> Tensor:
    # The plain formula: what torch.compile fuses (the in-place tile above, with its
    # thread-local scratch memory, compiles to a kernel twice as slow).
    return torch.sqrt(((q_re[:, None] - e_re[None])**2 +
                       (q_im[:, None] - e_im[None])**2).clamp_min(TINY)).sum(-1)


#: The floor of a squared complex modulus before its square root: a finite gradient where two
#: points coincide (sqrt'(0) is infinite, and inf * 0 is NaN), no change above 1e-30.
TINY = 1e-30
_EAGER = {'complex': _complex_modulus_sum_eager, 'l1': _l1_eager}
#: What is compiled, per kernel.
_FORMULA = {'complex': _complex_modulus_sum_formula, 'l1': _l1_eager}


def _tiled(fn: Callable, queries: Sequence[Tensor], entities: Sequence[Tensor], out: Tensor,
           d: int, fused: bool) -> Tensor:
    B, N = out.shape
    if fused:  # the fused kernel has no [b, n, d] intermediates: only bound the output tile
        b_step, n_step = max(1, min(B, 2**16)), N
    elif out.device.type == 'cpu':  # cache-sized tiles, blocked over entities and queries
        budget = max(1, min(_MAX_ELEMENTS, _MAX_TILE_BYTES // out.element_size()))
        n_step = max(1, min(N, _ENTITY_BLOCK, budget // max(d, 1)))
        b_step = max(1, budget // max(n_step * d, 1))
    else:
        n_step = max(1, min(N, _DEVICE_MAX_ELEMENTS // max(d, 1)))
        b_step = max(1, _DEVICE_MAX_ELEMENTS // max(n_step * d, 1))
    grad = torch.is_grad_enabled() and any(x.requires_grad for x in (*queries, *entities))
    scratch = (contextlib.nullcontext() if fused or grad or B * N == 0 else
               _tile_scratch(out, 2 * min(B, b_step) * min(N, n_step) * d))
    with scratch:
        for b0 in range(0, B, b_step):
            q = [x[b0:b0 + b_step] for x in queries]
            for n0 in range(0, N, n_step):
                e = [x[n0:n0 + n_step] for x in entities]
                out[b0:b0 + b_step, n0:n0 + n_step] = fn(*q, *e)
    return out


def _eager_tiles(name: str) -> Callable:
    r"""The eager kernel :obj:`name` over a whole (queries, entities) problem, in tiles: the
    fallback of a fused tile whose compilation fails."""
    def run(*args: Tensor) -> Tensor:
        half = len(args) // 2
        queries, entities = args[:half], args[half:]
        out = queries[0].new_empty(queries[0].size(0), entities[0].size(0))
        return _tiled(_EAGER[name], queries, entities, out, queries[0].size(-1), False)
    return run


def _kernel(name: str, x: Tensor, work: int, threshold: int = AUTO_COMPILE_ELEMENTS) -> Callable:
    fn = kernel(name, _FORMULA[name], x, work, threshold, fallback=_eager_tiles(name))
    return _EAGER[name] if fn is _FORMULA[name] else fn


def complex_modulus_sum(q_re: Tensor, q_im: Tensor, e_re: Tensor, e_im: Tensor) -> Tensor:
    r"""Pairwise sums of complex moduli,

    .. math::
        \mathbf{D}_{b n} = \sum_{k=1}^{d} |q_{b k} - e_{n k}|, \qquad
        q, e \in \mathbb{C}^d,

    the distance of RotatE, given real and imaginary parts.

    Args:
        q_re (Tensor): The queries' real parts.
        q_im (Tensor): The queries' imaginary parts.
        e_re (Tensor): The entities' real parts.
        e_im (Tensor): The entities' imaginary parts.

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


def lp_distance(q: Tensor, e: Tensor, p: float) -> Tensor:
    r"""Pairwise :math:`L_p` distances :math:`\|\mathbf{q}_b - \mathbf{e}_n\|_p` of the rows
    of :obj:`q` and :obj:`e`, computed exactly (no :math:`\|a\|^2 + \|b\|^2 - 2ab`
    expansion, whose cancellation would perturb rankings).

    Args:
        q (Tensor): The queries.
        e (Tensor): The entities.
        p (float): The norm :math:`p`; :math:`p = 1` has a fused kernel.

    Shapes:
        - **input:** :obj:`q` :math:`[B, d]`, :obj:`e` :math:`[N, d]`
        - **output:** :math:`[B, N]`
    """
    B, d = q.shape
    N = e.size(0)
    if p == 1:
        fn = _kernel('l1', q, B * N * d)
        if fn is not _EAGER['l1']:
            return _tiled(fn, (q, ), (e, ), q.new_empty(B, N), d, True)
    return torch.cdist(q.unsqueeze(0), e.unsqueeze(0), p=p,
                       compute_mode='donot_use_mm_for_euclid_dist').squeeze(0)
