r"""Argument checks shared by the models of :mod:`torch_mmkg.nn`.

Two kinds of checks live here, so that every model (and the representation, fusion and
interaction parts it is built from) reports bad input the same way:

* **hyper-parameters**, checked once in a constructor, before any arithmetic on them:
  :func:`check_sizes`, :func:`positive_int`, :func:`real` and :func:`choice` raise a
  :class:`ValueError` naming the owner (the model class), the argument, the value and what
  is allowed, e.g. ``"RotatE: hidden_channels must be a positive integer, got 0"``;
* **index tensors** of the public entry points (:meth:`~torch_mmkg.nn.KGEModel.forward`,
  :meth:`~torch_mmkg.nn.KGEModel.score_tails`, ...): :func:`check_indices` rejects
  non-integer dtypes and ids outside their range with a :class:`ValueError` naming the
  entry point, the argument, the first offending id, its position and the valid range,
  e.g. ``"score_tails: head_index holds entity id 15000 at position 3, outside
  [0, 15000)"``. It costs one min/max reduction per argument and one host synchronisation
  per call, and does nothing while :func:`torch.compile` traces.
"""
import math
import numbers
import operator
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.data.indices import IndexSpec, check_indices

__all__ = [
    'owner_name',
    'positive_int',
    'optional_positive_int',
    'check_sizes',
    'real',
    'probability',
    'choice',
    'IndexSpec',
    'check_indices',
]


def owner_name(owner: Any) -> str:
    r"""The name that prefixes a message: :obj:`owner` itself if it is a string, else the
    name of its class (of :obj:`owner` if it is a class)."""
    if isinstance(owner, str):
        return owner
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


def _is_bool(value: Any) -> bool:
    return (isinstance(value, bool) or type(value).__name__ == 'bool_'
            or (isinstance(value, Tensor) and value.dtype == torch.bool))


def positive_int(owner: Any, name: str, value: Any) -> int:
    r"""Returns :obj:`value` as an :obj:`int` if it is an integer :math:`\geq 1` (a Python
    or NumPy integer, or a one-element integer tensor; never a bool or a float, even an
    integral one); raises a :class:`ValueError` naming :obj:`owner` and :obj:`name`
    otherwise.

    Args:
        owner (Any): The model (or its class, or a name) the argument belongs to.
        name (str): The argument's name.
        value (Any): Its value.
    """
    out = None
    if not _is_bool(value):
        try:
            out = operator.index(value)
        except TypeError:
            pass
    if out is None or out < 1:
        raise ValueError(f"{owner_name(owner)}: {name} must be a positive integer, got "
                         f"{value!r}")
    return out


def optional_positive_int(owner: Any, name: str, value: Any) -> Optional[int]:
    r""":obj:`None`, or :func:`positive_int` of :obj:`value`."""
    return None if value is None else positive_int(owner, name, value)


def check_sizes(owner: Any, num_nodes: Any, num_relations: Any,
                hidden_channels: Any) -> Tuple[int, int, int]:
    r"""Checks the three sizes every model is built from, :obj:`num_nodes`,
    :obj:`num_relations` and :obj:`hidden_channels` (each a positive integer, see
    :func:`positive_int`), and returns them as :obj:`int`. Models call it first in their
    constructor when they compute anything before
    :meth:`KGEModel.__init__ <torch_mmkg.nn.KGEModel.__init__>` (which calls it too).

    Args:
        owner (Any): The model (or its class, or a name), for the messages.
        num_nodes (Any): The number of entities.
        num_relations (Any): The number of relations.
        hidden_channels (Any): The embedding size.
    """
    return (positive_int(owner, 'num_nodes', num_nodes),
            positive_int(owner, 'num_relations', num_relations),
            positive_int(owner, 'hidden_channels', hidden_channels))


def _interval(low: Optional[float], high: Optional[float], low_open: bool,
              high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ''


def real(owner: Any, name: str, value: Any, low: Optional[float] = None,
         high: Optional[float] = None, low_open: bool = False, high_open: bool = False,
         finite: bool = True, reason: str = '') -> float:
    r"""Returns :obj:`value` as a :obj:`float` if it is a real number (a Python or NumPy
    number or a one-element tensor, not a bool or a string) in the given interval; raises a
    :class:`ValueError` naming :obj:`owner`, :obj:`name`, the value and the interval
    otherwise. NaN is always rejected, infinities unless :obj:`finite` is :obj:`False`.

    Args:
        owner (Any): The model (or its class, or a name) the argument belongs to.
        name (str): The argument's name.
        value (Any): Its value.
        low (float, optional): The lower bound. (default: :obj:`None`)
        high (float, optional): The upper bound. (default: :obj:`None`)
        low_open (bool, optional): Exclude :obj:`low`. (default: :obj:`False`)
        high_open (bool, optional): Exclude :obj:`high`. (default: :obj:`False`)
        finite (bool, optional): Reject :math:`\pm\infty`. (default: :obj:`True`)
        reason (str, optional): Why the interval, added to the message (e.g.
            :obj:`"so that margin + epsilon is positive"`). (default: :obj:`""`)
    """
    out = None
    if not _is_bool(value) and (isinstance(value, numbers.Real) or
                                (isinstance(value, Tensor) and value.numel() == 1
                                 and not value.dtype.is_complex)):
        out = float(value)
    ok = out is not None and not math.isnan(out) and (not finite or math.isfinite(out))
    if ok and low is not None:
        ok = out > low if low_open else out >= low
    if ok and high is not None:
        ok = out < high if high_open else out <= high
    if not ok:
        parts = ('a finite' if finite else 'a', 'number',
                 _interval(low, high, low_open, high_open))
        what = ' '.join(s for s in parts if s)
        why = f" {reason}," if reason else ''
        raise ValueError(f"{owner_name(owner)}: {name} must be {what},{why} got {value!r}")
    return out


def probability(owner: Any, name: str, value: Any) -> float:
    r""":func:`real` in :math:`[0, 1)`: a dropout rate or a label smoothing, which at
    :math:`1` would leave nothing to learn from."""
    return real(owner, name, value, 0.0, 1.0, high_open=True)


def choice(owner: Any, name: str, value: Any, choices: Sequence[Any]) -> Any:
    r"""Returns :obj:`value` if it is one of :obj:`choices` (bools never match numbers);
    raises a :class:`ValueError` naming :obj:`owner`, :obj:`name`, the value and the
    choices otherwise."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{owner_name(owner)}: {name} must be one of "
                         f"{', '.join(repr(c) for c in choices)}, got {value!r}")
    return value
