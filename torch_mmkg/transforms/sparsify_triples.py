from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_mmkg.data.mmkg import REL
from torch_mmkg.transforms.drop_modality import _check_rate, _choose, _generator


@functional_transform('sparsify_triples')
class SparsifyTriples(BaseTransform):
    r"""Removes training triples, the link sparse scenario of the `"Multiple Heads are Better than
    One: Mixture of Modality Knowledge Experts for Entity Representation Learning"
    <https://arxiv.org/abs/2405.16869>`_ paper (functional name: :obj:`sparsify_triples`).

    Of the :math:`T` rows of the edge list with :obj:`train_mask`, exactly
    :math:`\mathrm{round}(\rho \cdot T)`, chosen uniformly by :func:`torch.randperm` (never by
    independent Bernoulli draws), are removed from the edge store together with all their per-edge
    attributes (:obj:`edge_index`, :obj:`edge_type`, every :obj:`*_mask` and any other tensor,
    list or tuple with one entry per edge), which stay aligned; a per-edge attribute of another
    type raises a :class:`ValueError`. Validation and test rows are kept, in order. Duplicate
    training rows count as separate rows.

    Args:
        rate (float): The share :math:`\rho \in [0, 1]` of training rows to remove.
        seed (int, optional): If set, the removal is reproducible: every call draws from a fresh
            :class:`torch.Generator` seeded with :obj:`seed`. If :obj:`None`, the global random
            number generator is used. (default: :obj:`None`)
    """
    def __init__(self, rate: float, seed: Optional[int] = None) -> None:
        self.rate = _check_rate(rate, 'rate')
        self.seed = seed

    def forward(self, data: HeteroData) -> HeteroData:
        store = data[REL]
        train = store.train_mask.nonzero().view(-1)
        removed = _choose(train, round(self.rate * train.numel()), _generator(self.seed))
        keep = torch.ones(store.train_mask.numel(), dtype=torch.bool,
                          device=store.train_mask.device)
        keep[removed] = False
        keep = keep.nonzero().view(-1)

        for key in store.edge_attrs():  # Collected before num_edges changes.
            value = store[key]
            dim = data.__cat_dim__(key, value, store)
            if isinstance(value, Tensor):
                store[key] = value.index_select(dim, keep.to(value.device))
            elif isinstance(value, (list, tuple)):
                store[key] = type(value)(value[i] for i in keep.tolist())
            else:
                raise ValueError(f"Cannot remove rows from the per-edge attribute '{key}' of "
                                 f"type {type(value).__name__}")
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.rate}, seed={self.seed})'
