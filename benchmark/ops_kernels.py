r"""The RotatE 1-vs-all kernel :func:`torch_mmkg.ops.complex_modulus_sum` on CPU: the eager
formulation before the kernels moved to :mod:`torch_mmkg.ops` (one broadcast per tile of
2^24 elements), the current eager one (cache-sized tiles updated in place) and the compiled
kernel, in one process, as medians of repeated calls.

    python benchmark/ops_kernels.py --repeats 5
"""
import argparse
import os
import statistics
import time

import torch

from torch_mmkg.ops import complex_modulus_sum, set_compile

parser = argparse.ArgumentParser()
parser.add_argument('--repeats', type=int, default=5)
parser.add_argument('--sizes', default='256x15000x250,64x2000x100',
                    help='comma-separated BxNxd')
args = parser.parse_args()


def old_eager(q_re, q_im, e_re, e_im, max_elements=2**24):
    r"""The eager kernel of ``torch_mmkg.nn.kernels`` before this change, verbatim."""
    B, d = q_re.shape
    N = e_re.size(0)
    out = q_re.new_empty(B, N)
    n_step = max(1, min(N, max_elements // max(d, 1)))
    b_step = max(1, max_elements // max(n_step * d, 1))
    for b0 in range(0, B, b_step):
        qr, qi = q_re[b0:b0 + b_step], q_im[b0:b0 + b_step]
        for n0 in range(0, N, n_step):
            er, ei = e_re[n0:n0 + n_step], e_im[n0:n0 + n_step]
            out[b0:b0 + b_step, n0:n0 + n_step] = torch.sqrt(
                (qr[:, None] - er[None])**2 + (qi[:, None] - ei[None])**2).sum(-1)
    return out


def new_eager(*x):
    set_compile(False)
    return complex_modulus_sum(*x)


def compiled(*x):
    set_compile(True)
    return complex_modulus_sum(*x)


def median_times(fns, x):
    r"""Median seconds of each function, the repeats interleaved (so that a change of load
    on the machine affects all alike), and each function's last output."""
    times = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(args.repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn(*x)
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times], outs


print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, float32, '
      f'medians of {args.repeats}, load average {os.getloadavg()[0]:.2f}')
print('| B x N x d | old eager | new eager | compiled | old/new | new/compiled |')
print('|---|---|---|---|---|---|')
for size in args.sizes.split(','):
    B, N, d = (int(v) for v in size.split('x'))
    gen = torch.Generator().manual_seed(0)
    x = [torch.randn(n, d, generator=gen) for n in (B, B, N, N)]
    t = time.perf_counter()
    compiled(*x)  # the first call compiles (once per process)
    first = time.perf_counter() - t
    new_eager(*x)  # warm-up
    old_eager(*x)
    (t_old, t_new, t_comp), (ref, out_new, out_comp) = median_times(
        [old_eager, new_eager, compiled], x)
    assert torch.equal(out_new, ref), 'the new eager kernel differs from the old one'
    assert torch.allclose(out_comp, ref, rtol=1e-4, atol=1e-3)
    print(f'| {B} x {N} x {d} | {t_old:.3f} s | {t_new:.3f} s | {t_comp:.3f} s '
          f'(first call {first:.1f} s) | {t_old / t_new:.1f}x | {t_new / t_comp:.1f}x |',
          flush=True)
print(f'load average {os.getloadavg()[0]:.2f}')
set_compile('auto')
