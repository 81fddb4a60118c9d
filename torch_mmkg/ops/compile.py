r"""When the fused kernels of :mod:`torch_mmkg.ops` are compiled by :func:`torch.compile`.

Compilation is controlled by :func:`set_compile` or the environment variable
:obj:`TORCH_MMKG_COMPILE` (:obj:`"auto"`, :obj:`"1"`, :obj:`"0"`). In :obj:`"auto"` mode (the
default) a kernel is compiled on CPU only when one call has more element operations than its
threshold (:obj:`AUTO_COMPILE_ELEMENTS` for 1-vs-all scoring), so small problems (and the
test-suite) never pay the few seconds of compilation. Compilation happens once per kernel and
process; :func:`will_compile` tells whether a call would pay it, and :func:`compile_notice`
lets a caller (a progress bar) hear when it starts.

Where :func:`torch.compile` is unavailable or fails (no C++ compiler, an unsupported platform
or Python), the kernels fall back to their eager formulations, compilation is switched off
for the rest of the process, and one :class:`CompileUnavailableWarning` says what it costs.
"""
import contextlib
import os
import warnings
import weakref
from typing import Callable, Dict, Iterator, List, Optional

import torch
from torch import Tensor

__all__ = ['CompileUnavailableWarning', 'set_compile', 'will_compile', 'compile_notice',
           'compiled_forward', 'AUTO_COMPILE_ELEMENTS', 'AUTO_COMPILE_REUSE_ELEMENTS',
           'AUTO_COMPILE_TRAIN_ELEMENTS', 'AUTO_COMPILE_RANK_ELEMENTS']

#: Element operations of one 1-vs-all scoring call above which it is compiled on CPU.
AUTO_COMPILE_ELEMENTS = 2**28
#: Once a kernel is compiled, calls above this many element operations reuse it.
AUTO_COMPILE_REUSE_ELEMENTS = 2**20
#: Element operations of one training scoring call above which it is compiled on CPU.
AUTO_COMPILE_TRAIN_ELEMENTS = 2**22
#: Score-matrix entries above which :func:`~torch_mmkg.ops.rank_counts` is compiled on CPU.
AUTO_COMPILE_RANK_ELEMENTS = 2**22

#: What falling back to eager costs (measured with ``benchmark/ops_kernels.py`` on 2 cores
#: of an AMD EPYC CPU, torch 2.13, an otherwise idle machine).
FALLBACK_COST = ('1-vs-all scoring falls back to eager tiles, measured ~2-4x slower than the '
                 'compiled kernel on 2 CPU cores (RotatE, float32: 2.0x for 256 queries x '
                 '15,000 entities x d=250, 3.7x for 64 x 2,000 x 100), and negative-sampling '
                 'training to unfused eager passes')


class CompileUnavailableWarning(UserWarning):
    r"""Issued once per process when :func:`torch.compile` is unavailable or fails for a
    kernel of :mod:`torch_mmkg.ops`; the kernels then run eagerly (slower, same results)."""


_mode: Optional[str] = None
_failed = False
_warned = False
_compiled: Dict[str, '_Compiled'] = {}
_compiled_modules: 'weakref.WeakKeyDictionary[torch.nn.Module, _Compiled]' = \
    weakref.WeakKeyDictionary()
_listeners: List[Callable[[str], None]] = []


class _Compiled:
    r"""A function compiled by :func:`torch.compile` (compiled lazily, on its first call) that
    remembers whether that first call has happened."""
    def __init__(self, name: str, fn: Callable):
        self.name, self.fn, self.ran = name, fn, False


def set_compile(mode) -> None:
    r"""Sets when the fused kernels are compiled (overrides :obj:`TORCH_MMKG_COMPILE`).

    Args:
        mode (str or bool): :obj:`"auto"` (large CPU problems only), :obj:`True` (always)
            or :obj:`False` (never).

    Raises:
        ValueError: For any other value.
    """
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


def will_compile(name: str, x: Tensor, work: int,
                 threshold: int = AUTO_COMPILE_ELEMENTS) -> bool:
    r"""Whether a call of the kernel :obj:`name` on tensors like :obj:`x` with :obj:`work`
    element operations would compile it now, i.e. the compile mode asks for it and the
    kernel has not been compiled yet in this process.

    Args:
        name (str): The kernel: :obj:`"complex"` (:func:`~torch_mmkg.ops.complex_modulus_sum`),
            :obj:`"l1"` (:func:`~torch_mmkg.ops.lp_distance` with :math:`p = 1`) or
            :obj:`"ranks"` (:func:`~torch_mmkg.ops.rank_counts`, whose threshold is
            :obj:`AUTO_COMPILE_RANK_ELEMENTS`).
        x (Tensor): An input of the call (its device decides in :obj:`"auto"` mode).
        work (int): The call's element operations.
        threshold (int, optional): The kernel's :obj:`"auto"` threshold.
            (default: :obj:`AUTO_COMPILE_ELEMENTS`)
    """
    c = _compiled.get(name)
    return not (c is not None and c.ran) and _want_compile(x, work, threshold)


@contextlib.contextmanager
def compile_notice(callback: Callable[[str], None]) -> Iterator[None]:
    r"""Within the block, calls :obj:`callback(name)` just before a kernel is compiled for
    the first time in this process (a call that will take a few seconds more).

    Args:
        callback (callable): Called with the kernel's name (:obj:`"complex"`,
            :obj:`"l1"`, :obj:`"ranks"`, ...).
    """
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def _disable(name: str, error: BaseException) -> None:
    r"""Switches compilation off for the process and warns once, with the cost."""
    global _failed, _warned
    _failed = True
    if _warned:
        return
    _warned = True
    reason = next(iter(str(error).strip().splitlines()), '')
    reason = f'{type(error).__name__}: {reason}' if reason else type(error).__name__
    warnings.warn(f"torch.compile is unavailable for the {name} kernel ({reason}); "
                  f"{FALLBACK_COST}. "
                  f"Compilation stays off in this process (TORCH_MMKG_COMPILE=0 skips the "
                  f"attempt)", CompileUnavailableWarning, stacklevel=2)


def _compile(name: str, fn: Callable) -> Optional[_Compiled]:
    try:
        return _Compiled(name, torch.compile(fn, dynamic=True))
    except Exception as e:  # torch.compile unavailable (platform, Python version)
        _disable(name, e)
        return None


def _with_fallback(compiled: _Compiled, eager: Callable) -> Callable:
    r"""Runs :obj:`compiled`; if compilation fails (no C++ compiler, an unsupported
    platform), runs :obj:`eager` instead, switches compilation off and warns once. An error
    that :obj:`eager` raises too (bad inputs) propagates and leaves compilation on."""
    def run(*args):
        if _failed:
            return eager(*args)
        if not compiled.ran:
            for callback in list(_listeners):
                callback(compiled.name)
        try:
            out = compiled.fn(*args)
        except Exception as e:
            error = e
        else:
            compiled.ran = True
            return out
        out = eager(*args)  # raises the caller's own error where the inputs are wrong
        _disable(compiled.name, error)
        return out
    return run


def kernel(name: str, eager: Callable, x: Tensor, work: int,
           threshold: int = AUTO_COMPILE_ELEMENTS,
           fallback: Optional[Callable] = None) -> Callable:
    r"""The kernel :obj:`name` for a call on tensors like :obj:`x` with :obj:`work` element
    operations: :obj:`eager` itself, or its compiled version (falling back to
    :obj:`fallback`, default :obj:`eager`, if compilation fails)."""
    c = _compiled.get(name)
    if c is not None and c.ran:  # compiled already: worth it for much smaller calls too
        threshold = min(threshold, AUTO_COMPILE_REUSE_ELEMENTS)
    if not _want_compile(x, work, threshold):
        return eager
    if c is None:
        c = _compile(name, eager)
        if c is None:
            return eager
        _compiled[name] = c
    return _with_fallback(c, fallback if fallback is not None else eager)


def fused(name: str, eager: Callable) -> Callable:
    r"""The compiled version of :obj:`eager` (for callers that already decided to compile),
    falling back to :obj:`eager` if compilation is unavailable or fails."""
    c = _compiled.get(name)
    if c is None:
        if _failed:
            return eager
        c = _compile(name, eager)
        if c is None:
            return eager
        _compiled[name] = c
    return _with_fallback(c, eager)


def compiled_forward(module: torch.nn.Module, x: Tensor, work: int) -> Callable:
    r"""The forward of :obj:`module`, compiled by :func:`torch.compile` (forward and
    backward fused) when the compile mode asks for it for a training call of :obj:`work`
    element operations, else the module itself. Used for the :math:`[B, K, d]` candidate
    scoring of negative-sampling training.

    Args:
        module (torch.nn.Module): The module (an interaction).
        x (Tensor): An input of the call (its device decides in :obj:`"auto"` mode).
        work (int): The call's element operations.
    """
    if not _want_compile(x, work, AUTO_COMPILE_TRAIN_ELEMENTS):
        return module
    c = _compiled_modules.get(module)
    if c is None:
        c = _compile(f'{module.__class__.__name__}.forward', module.forward)
        if c is None:
            return module
        _compiled_modules[module] = c
    return _with_fallback(c, module)
