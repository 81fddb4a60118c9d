from typing import Iterator, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.data.indices import IndexSpec, check_indices

from .negative_sampler import Negatives, NegativeSampler


class TripleBatch(NamedTuple):
    r"""A mini-batch of positives with their negatives; :obj:`model.loss(*batch)` accepts it."""
    head: Tensor
    rel: Tensor
    tail: Tensor
    negatives: Negatives


def _check_triples(head: Tensor, rel: Tensor, tail: Tensor):
    if not (head.shape == rel.shape == tail.shape) or head.dim() != 1:
        raise ValueError(f"head, rel and tail must be 1-d tensors of equal length, got "
                         f"{tuple(head.shape)}, {tuple(rel.shape)}, {tuple(tail.shape)}")
    for name, t in (('head_index', head), ('rel_type', rel), ('tail_index', tail)):
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must be an integer tensor of ids, got a {t.dtype} tensor")


class _Batches:
    def __init__(self, size: int, batch_size: int, shuffle: bool, drop_last: bool,
                 device: torch.device, generator: Optional[torch.Generator],
                 replacement: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size, self.batch_size = size, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.device, self.generator = device, generator
        self.replacement = bool(replacement)

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return (self.size + self.batch_size - 1) // self.batch_size

    def index_batches(self) -> Iterator[Tensor]:
        gen_device = self.generator.device if self.generator is not None else self.device
        if self.replacement and self.size:  # as many uniform draws as there are rows
            perm = torch.randint(self.size, (self.size, ), generator=self.generator,
                                 device=gen_device).to(self.device)
        elif self.shuffle:
            perm = torch.randperm(self.size, generator=self.generator,
                                  device=gen_device).to(self.device)
        else:
            perm = torch.arange(self.size, device=self.device)
        for i in range(len(self)):
            yield perm[i * self.batch_size:(i + 1) * self.batch_size]


class TripleLoader(_Batches):
    r"""Mini-batches of training triples, optionally with :math:`K` negatives each.

    The replacement of PyG's :class:`~torch_geometric.nn.kge.loader.KGTripletLoader`:
    batches are slices of a permutation drawn on the device of the triples (no per-item
    Python collation), and with a :obj:`sampler` every batch carries its negatives
    (:class:`TripleBatch`); without one it yields :obj:`(head, rel, tail)` like PyG.

    Args:
        head_index (torch.Tensor): Head indices :math:`[T]`.
        rel_type (torch.Tensor): Relation indices :math:`[T]`.
        tail_index (torch.Tensor): Tail indices :math:`[T]`.
        batch_size (int, optional): Positives per batch. (default: :obj:`1024`)
        shuffle (bool, optional): Reshuffle every epoch. (default: :obj:`True`)
        drop_last (bool, optional): Drop the last incomplete batch. (default: :obj:`False`)
        sampler (NegativeSampler, optional): Draws the negatives. (default: :obj:`None`)
        generator (torch.Generator, optional): Randomness of the shuffling; pass the
            sampler's generator too for reproducible runs. (default: :obj:`None`)
        replacement (bool, optional): Draw the positives of an epoch uniformly *with*
            replacement, :math:`T` draws for :math:`T` triples (as
            :class:`torch.utils.data.RandomSampler` with :obj:`replacement=True` and as the
            OpenKE sampler of the NATIVE, AdaMF-MAT and LBMKGC code bases do), so that a
            triple may appear several times in an epoch and others not at all;
            :obj:`shuffle` is then ignored. (default: :obj:`False`)
    """
    def __init__(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                 batch_size: int = 1024, shuffle: bool = True, drop_last: bool = False,
                 sampler: Optional[NegativeSampler] = None,
                 generator: Optional[torch.Generator] = None, replacement: bool = False):
        _check_triples(head_index, rel_type, tail_index)
        super().__init__(head_index.numel(), batch_size, shuffle, drop_last,
                         head_index.device, generator, replacement)
        self.head_index, self.rel_type, self.tail_index = head_index, rel_type, tail_index
        self.sampler = sampler

    def __iter__(self) -> Iterator[Union[TripleBatch, Tuple[Tensor, Tensor, Tensor]]]:
        for idx in self.index_batches():
            h, r, t = self.head_index[idx], self.rel_type[idx], self.tail_index[idx]
            if self.sampler is None:
                yield h, r, t
            else:
                yield TripleBatch(h, r, t, self.sampler(h, r, t))


class OneToNBatch(NamedTuple):
    r"""A mini-batch of 1-N queries :math:`(e, r, ?)` and their :obj:`[B, N]` 0/1 targets."""
    entity: Tensor
    rel: Tensor
    target: Tensor


class OneToNLoader(_Batches):
    r"""Mini-batches of 1-N training queries for models scored against all entities at once
    (TuckER, MoMoK, ConvE).

    Each distinct query :math:`(h, r, ?)` of the training triples is one example whose target
    row marks all its known tails. With :obj:`inverse_relations=True` each triple also yields
    the query :math:`(t, r + R, ?)` answered by :math:`h`, so head prediction becomes tail
    prediction with the inverse relation. Targets are built per batch from a CSR index of the
    answers, with :math:`O(B \cdot N)` memory.

    Args:
        head_index (torch.Tensor): Head indices :math:`[T]`.
        rel_type (torch.Tensor): Relation indices :math:`[T]`.
        tail_index (torch.Tensor): Tail indices :math:`[T]`.
        num_nodes (int): Number of entities :math:`N`.
        num_relations (int): Number of relations :math:`R` (without inverses).
        inverse_relations (bool, optional): Add the inverse queries. (default: :obj:`True`)
        batch_size (int, optional): Queries per batch. (default: :obj:`128`)
        shuffle (bool, optional): (default: :obj:`True`)
        drop_last (bool, optional): (default: :obj:`False`)
        generator (torch.Generator, optional): (default: :obj:`None`)
        replacement (bool, optional): Draw the queries of an epoch uniformly with
            replacement (see :class:`TripleLoader`). (default: :obj:`False`)
    """
    def __init__(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                 num_nodes: int, num_relations: int, inverse_relations: bool = True,
                 batch_size: int = 128, shuffle: bool = True, drop_last: bool = False,
                 generator: Optional[torch.Generator] = None, replacement: bool = False):
        _check_triples(head_index, rel_type, tail_index)
        N, R = int(num_nodes), int(num_relations)
        h, r, t = check_indices('OneToNLoader', IndexSpec('head_index', head_index, N),
                                IndexSpec('rel_type', rel_type, R, 'relation'),
                                IndexSpec('tail_index', tail_index, N))
        if inverse_relations:
            h, r, t = torch.cat([h, t]), torch.cat([r, r + R]), torch.cat([t, h])
        R2 = 2 * R if inverse_relations else R
        keys = torch.unique((h * R2 + r) * N + t)
        query, self.answer = keys.div(N, rounding_mode='floor'), keys % N
        qkeys, counts = torch.unique_consecutive(query, return_counts=True)
        self.query_entity = qkeys.div(R2, rounding_mode='floor')
        self.query_rel = qkeys % R2
        self.ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.num_nodes, self.num_relations = N, R
        self.inverse_relations = inverse_relations
        super().__init__(qkeys.numel(), batch_size, shuffle, drop_last, head_index.device,
                         generator, replacement)

    def __iter__(self) -> Iterator[OneToNBatch]:
        for idx in self.index_batches():
            start, count = self.ptr[idx], self.ptr[idx + 1] - self.ptr[idx]
            row = torch.repeat_interleave(torch.arange(idx.numel(), device=idx.device), count)
            offset = torch.arange(row.numel(), device=idx.device) - \
                torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
            target = torch.zeros(idx.numel(), self.num_nodes, device=idx.device)
            target[row, self.answer[start[row] + offset]] = 1.0
            yield OneToNBatch(self.query_entity[idx], self.query_rel[idx], target)
