from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.data.indices import IndexSpec, check_indices


def _check_range(name: str, t: Tensor, n: int, where: str = 'KnownTriples') -> Tensor:
    r"""Returns :obj:`t` as :obj:`int64` if it holds integer ids in :math:`[0, n)`; raises a
    :class:`ValueError` naming :obj:`where`, :obj:`name` and the first offending entry
    otherwise (out-of-range ids would alias other triples' keys, float ids be truncated)."""
    kind = 'relation' if name.startswith('rel') else 'entity'
    return check_indices(where, IndexSpec(name, t, n, kind))[0]


class KnownTriples:
    r"""A vectorised index of known triples, for filtered sampling and filtered ranking.

    Triples are encoded as sorted 64-bit keys

    .. math::
        k_\text{tail}(h, r, t) = (h R + r) N + t, \qquad
        k_\text{head}(h, r, t) = (t R + r) N + h,

    so that all known tails of a query :math:`(h, r, ?)` form one contiguous run of the sorted
    tail keys (a CSR row found by two :func:`torch.searchsorted` calls), and likewise all known
    heads of :math:`(?, r, t)`. Membership tests and neighbour lists for a batch of :math:`B`
    queries cost :math:`O(B \log T)` plus the output size; nothing loops in Python and nothing
    allocates :math:`B \times T`.

    Args:
        head (torch.Tensor): Head indices, shape :obj:`[T]`.
        rel (torch.Tensor): Relation indices, shape :obj:`[T]`.
        tail (torch.Tensor): Tail indices, shape :obj:`[T]`.
        num_entities (int): Number of entities :math:`N`.
        num_relations (int): Number of relations :math:`R`.

    Duplicate triples are stored once. The index lives on the device of its inputs and can be
    moved with :meth:`to`. Ids out of range, in the constructor or in a query, raise a
    :class:`ValueError`.
    """
    def __init__(self, head: Tensor, rel: Tensor, tail: Tensor, num_entities: int,
                 num_relations: int):
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        if (self.num_entities * self.num_relations + self.num_relations) * \
                self.num_entities >= 2**63:
            raise ValueError("num_entities² × num_relations overflows 64-bit triple keys")
        self._check(head, rel, tail)
        head, rel, tail = head.long(), rel.long(), tail.long()
        if not (head.shape == rel.shape == tail.shape) or head.dim() != 1:
            raise ValueError(f"head, rel and tail must be 1-d tensors of equal length, got "
                             f"{tuple(head.shape)}, {tuple(rel.shape)}, {tuple(tail.shape)}")
        self.tail_keys = torch.unique(self._key(head, rel, tail))  # sorted
        self.head_keys = torch.unique(self._key(tail, rel, head))

    @classmethod
    def from_data(cls, data, split='all') -> 'KnownTriples':
        r"""Builds the index from the :obj:`split` triples of a :mod:`torch_mmkg` graph
        (default: train, valid and test, as filtered evaluation requires)."""
        from torch_mmkg.data.mmkg import ENTITY, get_triples
        h, r, t = get_triples(data, split)
        return cls(h, r, t, data[ENTITY].num_nodes, data.num_relations)

    def _check(self, head: Optional[Tensor], rel: Tensor, tail: Optional[Tensor]):
        for name, t, n in (('head', head, self.num_entities), ('rel', rel, self.num_relations),
                           ('tail', tail, self.num_entities)):
            if t is not None:
                _check_range(name, t, n)

    def _key(self, a: Tensor, r: Tensor, b: Tensor) -> Tensor:
        return (a * self.num_relations + r) * self.num_entities + b

    def __len__(self) -> int:
        return self.tail_keys.numel()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({len(self)} triples, '
                f'num_entities={self.num_entities}, num_relations={self.num_relations})')

    @property
    def device(self) -> torch.device:
        return self.tail_keys.device

    def to(self, device) -> 'KnownTriples':
        r"""Moves the index to :obj:`device` (in place) and returns it."""
        self.tail_keys = self.tail_keys.to(device)
        self.head_keys = self.head_keys.to(device)
        return self

    def contains(self, head: Tensor, rel: Tensor, tail: Tensor) -> Tensor:
        r"""Returns a bool tensor telling which of the given triples are known.
        Inputs broadcast against each other."""
        self._check(head, rel, tail)
        head, rel, tail = torch.broadcast_tensors(head.long(), rel.long(), tail.long())
        key = self._key(head, rel, tail).to(self.device)
        if len(self) == 0:
            return torch.zeros_like(key, dtype=torch.bool)
        pos = torch.searchsorted(self.tail_keys, key.reshape(-1)).clamp_max(len(self) - 1)
        return (self.tail_keys[pos] == key.reshape(-1)).view(key.shape)

    def _range(self, keys: Tensor, a: Tensor, r: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The CSR row of each query: key base, start position and length in :obj:`keys`."""
        base = (a.long() * self.num_relations + r.long()).to(self.device) * self.num_entities
        start = torch.searchsorted(keys, base)
        return base, start, torch.searchsorted(keys, base + self.num_entities) - start

    def _neighbours(self, keys: Tensor, a: Tensor, r: Tensor) -> Tuple[Tensor, Tensor]:
        base, start, count = self._range(keys, *torch.broadcast_tensors(a, r))
        base, start, count = base.reshape(-1), start.reshape(-1), count.reshape(-1)
        query = torch.repeat_interleave(torch.arange(base.numel(), device=self.device), count)
        offset = torch.arange(query.numel(), device=self.device) - \
            torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        return query, keys[start[query] + offset] - base[query]

    def tails(self, head: Tensor, rel: Tensor) -> Tuple[Tensor, Tensor]:
        r"""All known tails of the queries :math:`(h_i, r_i, ?)`.

        Returns:
            (query, entity): two 1-d tensors; :obj:`entity[k]` is a known tail of query
            :obj:`query[k]`. Sorted by query, then entity.
        """
        self._check(head, rel, None)
        return self._neighbours(self.tail_keys, head, rel)

    def heads(self, rel: Tensor, tail: Tensor) -> Tuple[Tensor, Tensor]:
        r"""All known heads of the queries :math:`(?, r_i, t_i)`, as in :meth:`tails`."""
        self._check(None, rel, tail)
        return self._neighbours(self.head_keys, tail, rel)

    def count_tails(self, head: Tensor, rel: Tensor) -> Tensor:
        r"""Number of known tails of each query :math:`(h_i, r_i, ?)`."""
        self._check(head, rel, None)
        return self._range(self.tail_keys, head, rel)[2]

    def count_heads(self, rel: Tensor, tail: Tensor) -> Tensor:
        r"""Number of known heads of each query :math:`(?, r_i, t_i)`."""
        self._check(None, rel, tail)
        return self._range(self.head_keys, tail, rel)[2]

    def filter_mask(self, head: Tensor, rel: Tensor, tail: Optional[Tensor] = None,
                    side: str = 'tail') -> Tensor:
        r"""A dense :obj:`[B, N]` bool mask of the known answers of a batch of queries.

        For :obj:`side="tail"`, row :math:`i` marks every :math:`e` with
        :math:`(h_i, r_i, e)` known; for :obj:`side="head"`, every :math:`e` with
        :math:`(e, r_i, t_i)` known (then :obj:`head` is ignored and may be :obj:`None`).
        Memory is :math:`O(B \cdot N)`, never :math:`O(B \cdot T)`.
        """
        if side == 'tail':
            query, ent = self.tails(head, rel)
            B = torch.broadcast_shapes(head.shape, rel.shape).numel()
        elif side == 'head':
            if tail is None:
                raise ValueError("filter_mask(side='head') needs the tail indices")
            query, ent = self.heads(rel, tail)
            B = torch.broadcast_shapes(rel.shape, tail.shape).numel()
        else:
            raise ValueError(f"side must be 'head' or 'tail', got {side!r}")
        mask = torch.zeros(B, self.num_entities, dtype=torch.bool, device=self.device)
        mask[query, ent] = True
        return mask
