from typing import Any, NamedTuple, Optional, Tuple

import torch
from torch import Tensor


class FusionBasis(NamedTuple):
    r"""The relation-free part of a fusion of a stack (see :meth:`Fusion.decompose`): the
    joint embedding in the context of relation :math:`r` is :math:`\sum_p w_p(r)\,
    \mathbf{b}_p`, with the basis :obj:`basis` :math:`[*, P, D]` computed once per entity and
    the weights :math:`[*, P]` from :meth:`Fusion.mix` of :obj:`state` and :math:`r`."""
    basis: Tensor
    state: Any


def check_stack(stack: Tensor, mask: Optional[Tensor], channels: int,
                num_slots: Optional[int] = None) -> None:
    r"""Raises a :class:`ValueError` naming the mismatch unless :obj:`stack` is
    :math:`[*, S, D]` with :math:`D` = :obj:`channels` (and :math:`S` = :obj:`num_slots` if
    given) and :obj:`mask` is :obj:`None` or :math:`[*, S]`."""
    if stack.size(-1) != channels:
        raise ValueError(f"expected representations of width {channels}, got {stack.size(-1)}")
    if num_slots is not None and stack.size(-2) != num_slots:
        raise ValueError(f"expected a stack of {num_slots} representations, got "
                         f"{stack.size(-2)}")
    if mask is not None and mask.shape != stack.shape[:-1]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the stack "
                         f"{tuple(stack.shape[:-1])}")


class Fusion(torch.nn.Module):
    r"""The abstract base of fusions: a map from an entity's stack of representations
    :math:`[*, S, D]` (structure and modalities) and their availability :math:`[*, S]` (and,
    for relation-dependent fusions, relation ids broadcastable to :math:`[*]`) to a joint
    representation, plus the weights it gave each slot where it has any.

    A fusion never lets a missing representation (mask False) change its output when built
    with :obj:`mask_missing=True` (the default).

    Scoring a query against many candidates, or all entities, needs the joint
    representations of many entities in the context of one relation. A relation-free fusion
    (:attr:`relation_dependent` False) is computed once per entity. A relation-dependent one
    may split itself (:meth:`decompose`) into a relation-free basis :math:`[*, P, D]` and
    relation-dependent weights (:meth:`mix`): the models then compute the basis once per
    entity and only the weights per (entity, relation), and use fused weighted-gather
    kernels. A relation-dependent fusion without that split still works in every model,
    computed per (entity, relation).

    Subclasses implement :meth:`forward`, and :meth:`build` where their constructor needs
    more than :obj:`(channels, mask_missing)`.
    """
    #: Whether the output depends on the relation.
    relation_dependent: bool = False
    #: Whether a relation-dependent fusion implements :meth:`decompose` / :meth:`mix`.
    decomposable: bool = False

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, **kwargs) -> 'Fusion':
        r"""The fusion of :obj:`num_slots` representations of width :obj:`channels` for a
        graph of :obj:`num_relations` relations: one signature for every fusion, so that
        models build any of them by name (subclasses take what they need)."""
        return cls(channels, mask_missing=mask_missing, **kwargs)

    def output_width(self, channels: int) -> int:
        r"""The width of the joint representation of stacks of width :obj:`channels`."""
        return channels

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        r"""The joint representation :math:`[*, D']` and the slot weights (or
        :obj:`None`).

        Args:
            stack (torch.Tensor): :math:`[*, S, D]`.
            mask (torch.Tensor, optional): :math:`[*, S]`, True where present.
            rel (torch.Tensor, optional): Relation ids broadcastable to :math:`[*]` (needed
                by relation-dependent fusions only).
        """
        raise NotImplementedError

    def decompose(self, stack: Tensor, mask: Optional[Tensor] = None) -> FusionBasis:
        r"""The relation-free basis of :obj:`stack`. For a relation-free fusion the basis is
        the joint representation itself (:math:`P = 1`)."""
        if self.relation_dependent:
            raise NotImplementedError(f"{type(self).__name__} does not split into a "
                                      f"relation-free basis and relation weights")
        return FusionBasis(self(stack, mask)[0].unsqueeze(-2), None)

    def mix(self, state: Any, rel: Tensor) -> Tensor:
        r"""The weights :math:`[*, P]` of the basis from :meth:`decompose` (:obj:`state`)
        in the context of relations :obj:`rel` (broadcast against :math:`[*]`)."""
        raise NotImplementedError(f"{type(self).__name__} has no relation weights")

    @staticmethod
    def combine(basis: Tensor, weights: Tensor) -> Tensor:
        r""":math:`\sum_p w_p \mathbf{b}_p`: :math:`[*, P, D]` and :math:`[*, P]` to
        :math:`[*, D]`."""
        return (weights[..., None] * basis).sum(dim=-2)


class SingleSlot(Fusion):
    r"""The representation of a one-slot stack (a structural model): :math:`[*, 1, D]` to
    :math:`[*, D]`, a view without a copy.

    Args:
        channels (int): The width :math:`D`.
        mask_missing (bool, optional): Unused (the one slot is always present).
    """
    def __init__(self, channels: int, mask_missing: bool = True):
        super().__init__()
        self.channels = int(channels)

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, **kwargs) -> 'Fusion':
        if num_slots != 1:
            raise ValueError(f"SingleSlot fuses a stack of one representation, got {num_slots}")
        return cls(channels, **kwargs)

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        if stack.size(-2) != 1:
            raise ValueError(f"SingleSlot expects a stack of one representation, got "
                             f"{stack.size(-2)}")
        return stack.squeeze(-2), None  # a view whose backward is a view too (no zero fill)

    def extra_repr(self) -> str:
        return f'{self.channels}'
