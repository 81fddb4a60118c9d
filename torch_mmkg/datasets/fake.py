from typing import Callable, Dict, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData, InMemoryDataset

from torch_mmkg.data.mmkg import _MODALITY_RE, ENTITY, build_mmkg


class FakeMMKGDataset(InMemoryDataset):
    r"""A synthetic multi-modal knowledge graph with a planted signal, generated in memory
    without any files (in the spirit of :class:`torch_geometric.datasets.FakeDataset`).

    Every entity :math:`e` belongs to a hidden cluster :math:`c(e)` (balanced cluster sizes), and
    every relation :math:`r` maps clusters by a fixed random permutation :math:`\pi_r`. A triple
    :math:`(h, r, t)` draws :math:`h` and :math:`r` uniformly and :math:`t` uniformly from the
    cluster :math:`\pi_r(c(h))`. The feature row of entity :math:`e` in modality :math:`m` is

    .. math::
        \mathbf{x}^{(m)}_e = \mathbf{W}_m^{\top} \mathbf{p}^{(m)}_{c(e)} + \sigma
        \boldsymbol{\epsilon}_e, \qquad \mathbf{p}^{(m)}_c \sim \mathcal{N}(\mathbf{0},
        \mathbf{I}), \quad (\mathbf{W}_m)_{ij} \sim \mathcal{N}(0, 1 / F_m), \quad
        \boldsymbol{\epsilon}_e \sim \mathcal{N}(\mathbf{0}, \mathbf{I}),

    with a per-cluster prototype :math:`\mathbf{p}^{(m)}_c` and a linear map :math:`\mathbf{W}_m`
    fixed per modality, so that each coordinate of the signal has unit variance and
    :math:`\sigma` (:obj:`noise`) is the noise-to-signal ratio per coordinate: the features reveal
    the cluster. For each modality independently, exactly
    :math:`\mathrm{round}(\text{missing\_rate} \cdot N)` entities chosen uniformly lack it
    (mask :obj:`False`, zero row).

    The triples are distinct and split uniformly at random into exactly
    :math:`\mathrm{round}(\text{val\_ratio} \cdot T)` validation and
    :math:`\mathrm{round}(\text{test\_ratio} \cdot T)` test triples, the rest being training
    triples. The graph follows the :mod:`torch_mmkg` layout (see :func:`torch_mmkg.data.build_mmkg`)
    and additionally holds the hidden clusters :obj:`data['entity'].cluster` (:obj:`[N]`) and the
    cluster maps :obj:`data.cluster_map` (:obj:`[R, C]`, :obj:`cluster_map[r, c]` is
    :math:`\pi_r(c)`) for tests and demos.

    Args:
        num_entities (int, optional): The number of entities :math:`N`. (default: :obj:`500`)
        num_relations (int, optional): The number of relations :math:`R`. (default: :obj:`8`)
        num_clusters (int, optional): The number of hidden clusters :math:`C \leq N`.
            (default: :obj:`10`)
        num_triples (int, optional): The number of distinct triples :math:`T`.
            (default: :obj:`5000`)
        modalities (Mapping[str, int], optional): The feature dimension :math:`F_m` of each
            modality. If :obj:`None`, :obj:`{"image": 32, "text": 16}`. (default: :obj:`None`)
        missing_rate (float, optional): The share of entities lacking each modality.
            (default: :obj:`0.2`)
        noise (float, optional): The feature noise :math:`\sigma \geq 0`. (default: :obj:`0.1`)
        val_ratio (float, optional): The share of validation triples. (default: :obj:`0.1`)
        test_ratio (float, optional): The share of test triples. (default: :obj:`0.1`)
        seed (int, optional): The seed of the generator; the same seed gives the same graph.
            (default: :obj:`0`)
        transform (callable, optional): A function/transform that takes in a
            :class:`~torch_geometric.data.HeteroData` object and returns a transformed version.
            The data object will be transformed before every access. (default: :obj:`None`)
        pre_transform (callable, optional): A function/transform applied once to the generated
            graph. (default: :obj:`None`)
    """
    def __init__(
        self,
        num_entities: int = 500,
        num_relations: int = 8,
        num_clusters: int = 10,
        num_triples: int = 5000,
        modalities: Optional[Mapping[str, int]] = None,
        missing_rate: float = 0.2,
        noise: float = 0.1,
        val_ratio: float = 0.1,
        test_ratio: float = 0.1,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
    ) -> None:
        super().__init__(None, transform)
        if modalities is None:
            modalities = {'image': 32, 'text': 16}
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.num_clusters = int(num_clusters)
        self.num_triples = int(num_triples)
        self.modalities = dict(modalities)
        self.missing_rate = float(missing_rate)
        self.noise = float(noise)
        self.val_ratio = float(val_ratio)
        self.test_ratio = float(test_ratio)
        self.seed = int(seed)
        self._check_args()

        data = self.generate_data()
        if pre_transform is not None:
            data = pre_transform(data)
        self.data, self.slices = self.collate([data])

    def _check_args(self) -> None:
        if self.num_relations < 1:
            raise ValueError(f"'num_relations' must be positive, got {self.num_relations}")
        if not 1 <= self.num_clusters <= self.num_entities:
            raise ValueError(f"'num_clusters' must lie in [1, num_entities={self.num_entities}], "
                             f"got {self.num_clusters}")
        for name in ('missing_rate', 'val_ratio', 'test_ratio'):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"'{name}' must lie in [0, 1], got {value}")
        if self.val_ratio + self.test_ratio > 1.0:
            raise ValueError(f"'val_ratio' + 'test_ratio' must not exceed 1, got "
                             f"{self.val_ratio + self.test_ratio}")
        if not 0.0 <= self.noise < float('inf'):
            raise ValueError(f"'noise' must be a finite non-negative number, got {self.noise}")
        for m, dim in self.modalities.items():
            if not isinstance(m, str) or not _MODALITY_RE.match(m):
                raise ValueError(f"Modality name {m!r} must be a lower-case identifier "
                                 f"([a-z][a-z0-9_]*)")
            if int(dim) < 1:
                raise ValueError(f"Modality '{m}' must have a positive dimension, got {dim}")
        sizes = torch.full((self.num_clusters, ), self.num_entities // self.num_clusters)
        sizes[:self.num_entities % self.num_clusters] += 1
        # Each (h, r) has the |cluster(pi_r(c(h)))| tails; permutations make this sum exact:
        max_triples = self.num_relations * int((sizes * sizes).sum())
        if not 1 <= self.num_triples <= max_triples:
            raise ValueError(f"'num_triples' must lie in [1, {max_triples}] (the number of "
                             f"distinct triples the clusters allow), got {self.num_triples}")

    def generate_data(self) -> HeteroData:
        r"""Generates the graph from :obj:`seed`."""
        N, R, C = self.num_entities, self.num_relations, self.num_clusters
        gen = torch.Generator().manual_seed(self.seed)
        cluster = torch.randperm(N, generator=gen) % C
        cluster_map = torch.stack([torch.randperm(C, generator=gen) for _ in range(R)])

        members = torch.argsort(cluster, stable=True)
        count = torch.bincount(cluster, minlength=C)
        offset = torch.cumsum(count, 0) - count
        triples = torch.empty(0, 3, dtype=torch.long)
        while triples.size(0) < self.num_triples:
            num = 2 * (self.num_triples - triples.size(0)) + 16
            head = torch.randint(N, (num, ), generator=gen)
            rel = torch.randint(R, (num, ), generator=gen)
            target = cluster_map[rel, cluster[head]]
            pos = (torch.rand(num, generator=gen, dtype=torch.float64) * count[target]).long()
            pos = torch.minimum(pos, count[target] - 1)
            tail = members[offset[target] + pos]
            triples = _unique_rows(torch.cat([triples, torch.stack([head, rel, tail], 1)]),
                                   N, R)
        triples = triples[:self.num_triples]

        perm = torch.randperm(self.num_triples, generator=gen)
        num_val = round(self.val_ratio * self.num_triples)
        num_test = round(self.test_ratio * self.num_triples)
        splits = {
            'val': triples[perm[:num_val]],
            'test': triples[perm[num_val:num_val + num_test]],
            'train': triples[perm[num_val + num_test:]],
        }

        features: Dict[str, Tensor] = {}
        masks: Dict[str, Tensor] = {}
        num_missing = round(self.missing_rate * N)
        for m, dim in self.modalities.items():
            dim = int(dim)
            prototypes = torch.randn(C, dim, generator=gen)
            weight = torch.randn(dim, dim, generator=gen) / dim**0.5
            x = prototypes[cluster] @ weight
            x = x + self.noise * torch.randn(N, dim, generator=gen)
            mask = torch.ones(N, dtype=torch.bool)
            mask[torch.randperm(N, generator=gen)[:num_missing]] = False
            x[~mask] = 0
            features[m], masks[m] = x, mask

        data = build_mmkg(N, R, splits, features, masks)
        data[ENTITY].cluster = cluster
        data.cluster_map = cluster_map
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_entities={self.num_entities}, '
                f'num_relations={self.num_relations}, num_triples={self.num_triples}, '
                f'modalities={self.modalities})')


def _unique_rows(triples: Tensor, num_entities: int, num_relations: int) -> Tensor:
    r"""Removes repeated triples, keeping the first occurrence of each, in order."""
    key = (triples[:, 0] * num_relations + triples[:, 1]) * num_entities + triples[:, 2]
    _, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1, ), key.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(key.numel()), reduce='amin')
    return triples[first.sort().values]
