import math
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_mmkg.completion.base import completed_key, original_mask
from torch_mmkg.data.mmkg import ENTITY, feature_key, mask_key
from torch_mmkg.transforms.drop_modality import (_check_modalities, _generator,
                                                 _resolve_modalities)

DISTRIBUTIONS = ('normal', 'uniform')


def filled_key(modality: str) -> str:
    r"""The entity-store key of the flag of rows of :obj:`modality` that
    :class:`RandomFillModality` filled with random values."""
    return f'filled_{modality}'


def _finite(value: Optional[float], name: str, positive: bool = False) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{name}' must be a number or None, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value < 0):
        raise ValueError(f"'{name}' must be a finite{' non-negative' if positive else ''} "
                         f"number, got {value}")
    return value


@functional_transform('random_fill_modality')
class RandomFillModality(BaseTransform):
    r"""Fills the features of entities that miss a modality with random vectors, the
    "random initialisation" of missing modality information: the ablation "w/o LvMC" of the
    `"Large Model-Driven Balanced Multimodal Knowledge Graph Completion"
    <https://github.com/guoynow/LBMKGC>`_ paper (Table 2) and the treatment of the baselines
    of its modality-missing experiment (Fig. 3) (functional name:
    :obj:`random_fill_modality`).

    For every chosen modality :math:`m`, every row whose mask is :obj:`False` in the input
    (missing in the source data, or dropped by
    :class:`~torch_mmkg.transforms.DropModality`) gets a vector drawn independently per
    dimension :math:`d`,

    .. math::
        x_{e,d} \sim \mathcal{N}(\mu_d, \sigma_d^2) \quad (\texttt{"normal"}), \qquad
        x_{e,d} \sim \mathcal{U}\big(\mu_d - \sqrt{3}\,\sigma_d,\ \mu_d + \sqrt{3}\,
        \sigma_d\big) \quad (\texttt{"uniform"}),

    both with mean :math:`\mu_d` and standard deviation :math:`\sigma_d`: by default the mean
    and (biased) standard deviation of dimension :math:`d` over the rows originally present
    in the input (mask :obj:`True` and not flagged as completed, see
    :func:`~torch_mmkg.completion.original_mask`), so that filled rows have the scale of real
    ones; :obj:`loc` and :obj:`scale` replace them by constants (needed when no row is
    present, e.g. after dropping a modality entirely). Present rows stay untouched, and so
    do completed rows (:class:`~torch_mmkg.transforms.CompleteModality`).

    **Mask.** The paper's ablation treats the random rows as present: with
    :obj:`mark_present=True` (the default) their mask becomes :obj:`True`, so every model
    fuses them like real rows, and they are flagged in ``entity.completed_<m>`` (so that
    :func:`~torch_mmkg.completion.original_mask` and the completeness breakdowns of the
    evaluation still see the source data) and in ``entity.filled_<m>``
    (:func:`filled_key`; OR-ed into existing flags, so that chained transforms accumulate).
    With :obj:`mark_present=False` the mask stays :obj:`False`: the rows then only matter to
    models that read every stored row (:obj:`mask_missing=False`, as the papers' code).

    Args:
        modalities (Sequence[str], optional): The modalities to fill. If :obj:`None`, all
            modalities of the graph. (default: :obj:`None`)
        distribution (str, optional): :obj:`"normal"` or :obj:`"uniform"`.
            (default: :obj:`"normal"`)
        mark_present (bool, optional): Set the mask of the filled rows (see above).
            (default: :obj:`True`)
        loc (float, optional): The mean :math:`\mu_d` of every dimension; :obj:`None` takes
            it from the present rows. (default: :obj:`None`)
        scale (float, optional): The standard deviation :math:`\sigma_d \geq 0` of every
            dimension; :obj:`None` takes it from the present rows. (default: :obj:`None`)
        seed (int, optional): If set, the fill is reproducible: every call draws from a
            fresh :class:`torch.Generator` seeded with :obj:`seed`. If :obj:`None`, the
            global random number generator is used. (default: :obj:`None`)
    """
    def __init__(
        self,
        modalities: Optional[Sequence[str]] = None,
        distribution: str = 'normal',
        mark_present: bool = True,
        loc: Optional[float] = None,
        scale: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"'distribution' must be one of {DISTRIBUTIONS}, got "
                             f"{distribution!r}")
        if not isinstance(mark_present, bool):
            raise ValueError(f"'mark_present' must be True or False, got {mark_present!r}")
        self.modalities = _check_modalities(modalities)
        self.distribution = distribution
        self.mark_present = mark_present
        self.loc = _finite(loc, 'loc')
        self.scale = _finite(scale, 'scale', positive=True)
        self.seed = seed

    def moments(self, data: HeteroData, modality: str):
        r"""The per-dimension mean and standard deviation :math:`[F_m]` that the filled rows
        of :obj:`modality` follow."""
        x = data[ENTITY][feature_key(modality)]
        ref = original_mask(data, modality).to(x.device)
        if self.loc is None or self.scale is None:
            if int(ref.sum()) < 2:
                raise ValueError(f"RandomFillModality: modality '{modality}' is originally "
                                 f"present for {int(ref.sum())} entities, too few to take "
                                 f"the mean and standard deviation of its features from; "
                                 f"pass 'loc' and 'scale' (e.g. loc=0.0, scale=1.0)")
            real = x[ref].double()
        width = x.size(1)
        mean = (real.mean(dim=0) if self.loc is None else
                torch.full((width, ), self.loc, dtype=torch.float64, device=x.device))
        std = (real.std(dim=0, unbiased=False) if self.scale is None else
               torch.full((width, ), self.scale, dtype=torch.float64, device=x.device))
        return mean, std

    def _draw(self, num: int, width: int, generator: Optional[torch.Generator]) -> Tensor:
        if self.distribution == 'normal':
            return torch.randn(num, width, generator=generator, dtype=torch.float64)
        u = torch.rand(num, width, generator=generator, dtype=torch.float64)
        return math.sqrt(3.0) * (2.0 * u - 1.0)  # mean 0, variance 1

    def forward(self, data: HeteroData) -> HeteroData:
        modalities = _resolve_modalities(data, self.modalities)
        if not modalities:
            raise ValueError("The graph has no modalities to fill")
        ent = data[ENTITY]
        generator = _generator(self.seed)
        for m in modalities:
            x, mask = ent[feature_key(m)], ent[mask_key(m)]
            rows = ~mask
            num = int(rows.sum())
            if num:
                mean, std = self.moments(data, m)
                eps = self._draw(num, x.size(1), generator).to(x.device)
                x = x.clone()
                x[rows] = (mean + std * eps).to(x.dtype)
            ent[feature_key(m)] = x
            if self.mark_present:
                ent[mask_key(m)] = mask | rows
                key = completed_key(m)
                ent[key] = ent[key] | rows if key in ent else rows
            key = filled_key(m)
            ent[key] = ent[key] | rows if key in ent else rows
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(modalities={self.modalities}, '
                f'distribution={self.distribution!r}, mark_present={self.mark_present}, '
                f'loc={self.loc}, scale={self.scale}, seed={self.seed})')
