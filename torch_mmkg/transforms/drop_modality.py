from typing import List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_mmkg.data.mmkg import ENTITY, feature_key, get_modalities, mask_key


def _check_rate(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"'{name}' must lie in [0, 1], got {value}")
    return value


def _check_modalities(modalities: Optional[Sequence[str]]) -> Optional[List[str]]:
    if modalities is None:
        return None
    if isinstance(modalities, str):
        modalities = [modalities]
    modalities = list(modalities)
    if len(modalities) == 0:
        raise ValueError("'modalities' must name at least one modality (or be None for all)")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"'modalities' has duplicates: {modalities}")
    return modalities


def _resolve_modalities(data: HeteroData, modalities: Optional[List[str]]) -> List[str]:
    available = get_modalities(data)
    if modalities is None:
        return available
    unknown = [m for m in modalities if m not in available]
    if unknown:
        raise ValueError(f"Unknown modalities {unknown}: the graph has {available}")
    return modalities


def _generator(seed: Optional[int]) -> Optional[torch.Generator]:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _choose(candidates: Tensor, num: int, generator: Optional[torch.Generator]) -> Tensor:
    r"""Picks exactly :obj:`num` entries of :obj:`candidates` uniformly without replacement."""
    perm = torch.randperm(candidates.numel(), generator=generator)[:num]
    return candidates[perm.to(candidates.device)]


@functional_transform('drop_modality')
class DropModality(BaseTransform):
    r"""Drops modality information of entities to simulate the imbalanced modality scenarios of
    the `"NativE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper (functional name: :obj:`drop_modality`).

    The *imbalanced proportion* :math:`\eta` (:obj:`rate`) is the share of missing modality
    information in the resulting graph, counted over a population :math:`\mathcal{P}`:

    * :obj:`level="entity"`: :math:`\mathcal{P}` holds all :math:`N` entities, and an entity
      lacks modality information when it lacks **every** one of the chosen modalities. Selected
      entities lose all of their remaining chosen modalities; an entity that already misses some
      of them can be selected and then loses the rest.
    * :obj:`level="modality"`: :math:`\mathcal{P}` holds all :math:`N \cdot M`
      (entity, modality) pairs over the :math:`M` chosen modalities, pooled across modalities, so
      an entity may end up with any number of its modalities.

    Rates are exact, not expected: with :math:`A` members of :math:`\mathcal{P}` already missing
    in the input, the transform drops exactly

    .. math::
        \mathrm{round}(\eta \cdot |\mathcal{P}|) - A

    members chosen uniformly (by :func:`torch.randperm`, never by independent Bernoulli draws)
    among the members that are not missing, so that the output misses exactly
    :math:`\mathrm{round}(\eta \cdot |\mathcal{P}|)` of them and :math:`\eta` is the share of
    missing information whatever the input. On a complete input this is the paper's "randomly
    drop a proportion :math:`\eta`". A :class:`ValueError` is raised if the input already misses
    more than :math:`\mathrm{round}(\eta \cdot |\mathcal{P}|)` members.

    With :obj:`relative_to="present"`, :math:`\eta` is instead the share of the *present*
    members that is dropped: exactly :math:`\mathrm{round}(\eta \cdot |\mathcal{P}_+|)` of the
    :math:`|\mathcal{P}_+|` members not missing in the input, whatever is missing already (the
    natural choice on real data with its own holes, e.g. DB15K's numeric modality).

    A dropped (entity, modality) pair gets :obj:`mask_<m> = False` and a new feature row: zeros
    (:obj:`fill="zeros"`), or a vector drawn from :math:`\mathcal{N}(\mu_d, \sigma_d^2)` per
    dimension :math:`d`, where :math:`\mu_d` and :math:`\sigma_d` are the mean and (biased) standard
    deviation of the rows of modality :math:`m` present in the input (:obj:`fill="random"`, the
    paper's "initiated randomly"). Pairs missing in the input and all other rows stay untouched.

    The transform records the pairs it dropped in a boolean :obj:`[N]` vector
    :obj:`data['entity'].dropped_<m>` per chosen modality :obj:`<m>` (OR-ed into an existing one,
    so that chained drops accumulate), e.g. to group evaluation triples by the missing modality
    information of their entities.

    Args:
        rate (float): The imbalanced proportion :math:`\eta \in [0, 1]`.
        level (str, optional): :obj:`"entity"` or :obj:`"modality"` (see above).
            (default: :obj:`"entity"`)
        modalities (Sequence[str], optional): The modalities to drop from. If :obj:`None`, all
            modalities of the graph. (default: :obj:`None`)
        fill (str, optional): :obj:`"zeros"` or :obj:`"random"` (see above).
            (default: :obj:`"zeros"`)
        relative_to (str, optional): :obj:`"all"` (:math:`\eta` is the share missing in the
            output) or :obj:`"present"` (:math:`\eta` is the share of present members dropped).
            (default: :obj:`"all"`)
        seed (int, optional): If set, the drop is reproducible: every call draws from a fresh
            :class:`torch.Generator` seeded with :obj:`seed`. If :obj:`None`, the global random
            number generator is used. (default: :obj:`None`)
    """
    def __init__(
        self,
        rate: float,
        level: str = 'entity',
        modalities: Optional[Sequence[str]] = None,
        fill: str = 'zeros',
        relative_to: str = 'all',
        seed: Optional[int] = None,
    ) -> None:
        self.rate = _check_rate(rate, 'rate')
        if level not in ('entity', 'modality'):
            raise ValueError(f"'level' must be 'entity' or 'modality', got {level!r}")
        if fill not in ('zeros', 'random'):
            raise ValueError(f"'fill' must be 'zeros' or 'random', got {fill!r}")
        if relative_to not in ('all', 'present'):
            raise ValueError(f"'relative_to' must be 'all' or 'present', got {relative_to!r}")
        self.relative_to = relative_to
        self.level = level
        self.modalities = _check_modalities(modalities)
        self.fill = fill
        self.seed = seed

    def forward(self, data: HeteroData) -> HeteroData:
        modalities = _resolve_modalities(data, self.modalities)
        if not modalities:
            raise ValueError("The graph has no modalities to drop")
        ent = data[ENTITY]
        present = torch.stack([ent[mask_key(m)] for m in modalities], dim=1)  # [N, M]
        generator = _generator(self.seed)

        if self.level == 'entity':
            lacking = ~present.any(dim=1)
            drop = torch.zeros_like(present)
            num = self._num_to_drop(int(lacking.sum()), lacking.numel(), 'entities lacking all '
                                    f'of {modalities}')
            chosen = _choose((~lacking).nonzero().view(-1), num, generator)
            drop[chosen] = present[chosen]
        else:
            num = self._num_to_drop(int((~present).sum()), present.numel(),
                                    f'(entity, modality) pairs missing over {modalities}')
            drop = torch.zeros(present.numel(), dtype=torch.bool, device=present.device)
            drop[_choose(present.view(-1).nonzero().view(-1), num, generator)] = True
            drop = drop.view_as(present)

        for j, m in enumerate(modalities):
            rows = drop[:, j]
            x, mask = ent[feature_key(m)], ent[mask_key(m)]
            x = x.clone()
            if self.fill == 'zeros':
                x[rows] = 0
            else:
                ref = ent[feature_key(m)][mask]
                mean, std = ref.mean(dim=0), ref.std(dim=0, unbiased=False)
                eps = torch.randn(int(rows.sum()), x.size(1), generator=generator,
                                  dtype=x.dtype).to(x.device)
                x[rows] = mean + std * eps
            ent[feature_key(m)] = x
            ent[mask_key(m)] = mask & ~rows
            key = f'dropped_{m}'
            ent[key] = ent[key] | rows if key in ent else rows
        return data

    def _num_to_drop(self, num_missing: int, population: int, what: str) -> int:
        if self.relative_to == 'present':
            return round(self.rate * (population - num_missing))
        target = round(self.rate * population)
        if num_missing > target:
            raise ValueError(f"The graph already has {num_missing} of {population} {what} "
                             f"(share {num_missing / population:.4f}), more than "
                             f"round(rate * {population}) = {target} for rate={self.rate}")
        return target - num_missing

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.rate}, level={self.level!r}, '
                f'modalities={self.modalities}, fill={self.fill!r}, '
                f'relative_to={self.relative_to!r}, seed={self.seed})')
