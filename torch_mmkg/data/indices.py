r"""Checks of index tensors (entity and relation ids), shared by the data layer (the known-triple
index, samplers, loaders, the evaluator) and the models' entry points.

:func:`check_indices` rejects non-integer dtypes (PyTorch would truncate float ids or read bools
as masks) and ids outside their range with a :class:`ValueError` naming the entry point, the
argument, the first offending id, its position and the valid range, e.g. ``"score_tails:
head_index holds entity id 15000 at position 3, outside [0, 15000)"``. It costs one min/max
reduction per argument and one host synchronisation per call, and skips the range check while
:func:`torch.compile` traces.
"""
from typing import Any, NamedTuple, Tuple

import torch
from torch import Tensor

__all__ = ['IndexSpec', 'check_indices']


class IndexSpec(NamedTuple):
    r"""One index argument of an entry point for :func:`check_indices`: its :obj:`name`
    (e.g. :obj:`"head_index"`), the :obj:`index` tensor, the bound :obj:`high` of the valid
    ids :math:`[0, \mathrm{high})`, what the ids are (:obj:`kind`, e.g. :obj:`"entity"`)
    and an optional :obj:`note` appended to the message (e.g. what the range covers)."""
    name: str
    index: Any
    high: int
    kind: str = 'entity'
    note: str = ''


def _position(index: Tensor, flat: int) -> str:
    if index.dim() == 0:
        return ''
    if index.dim() == 1:
        return f' at position {flat}'
    pos = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), index.shape))
    return f' at position {pos}'


def _out_of_range(where: str, spec: IndexSpec, index: Tensor) -> ValueError:
    flat = index.reshape(-1)
    bad = ((flat < 0) | (flat >= spec.high)).nonzero()
    i = int(bad[0, 0])
    note = f' ({spec.note})' if spec.note else ''
    return ValueError(f"{where}: {spec.name} holds {spec.kind} id {int(flat[i])}"
                      f"{_position(index, i)}, outside [0, {spec.high}){note}")


def check_indices(where: str, *specs: IndexSpec) -> Tuple[Tensor, ...]:
    r"""Checks the index arguments of an entry point and returns them as :obj:`int64`
    tensors (other integer dtypes are converted, :obj:`int64` ones returned as they are).

    A non-tensor raises a :class:`TypeError`; a tensor of another dtype (floating, complex
    or bool: PyTorch would truncate floats or read bools as masks) or holding an id outside
    :math:`[0, \mathrm{high})` raises a :class:`ValueError` naming :obj:`where`, the
    argument, the first offending id with its position, and the valid range. The range check
    is one :func:`torch.aminmax` per non-empty argument and one host synchronisation for all
    of them; it is skipped while :func:`torch.compile` traces (the dtype check is not).

    Args:
        where (str): The entry point, e.g. :obj:`"score_tails"`.
        *specs (IndexSpec): The arguments.
    """
    out = []
    for spec in specs:
        index = spec.index
        if not isinstance(index, Tensor):
            raise TypeError(f"{where}: {spec.name} must be a tensor of {spec.kind} ids in "
                            f"[0, {spec.high}), got {type(index).__name__}")
        if index.dtype != torch.long:
            dtype = index.dtype
            if dtype == torch.bool or dtype.is_floating_point or dtype.is_complex:
                raise ValueError(f"{where}: {spec.name} must be an integer tensor of "
                                 f"{spec.kind} ids in [0, {spec.high}), got a {dtype} tensor")
            index = index.long()
        out.append(index)
    if torch.compiler.is_compiling():
        return tuple(out)
    rows = [i for i, index in enumerate(out) if index.numel()]
    if rows:
        ends = [end for i in rows for end in torch.aminmax(out[i])]
        bounds = torch.stack(ends).tolist()
        for k, i in enumerate(rows):
            if bounds[2 * k] < 0 or bounds[2 * k + 1] >= specs[i].high:
                raise _out_of_range(where, specs[i], out[i])
    return tuple(out)
