from typing import Optional, Sequence

import torch
from torch_geometric.data import HeteroData
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_mmkg.data.mmkg import ENTITY, feature_key, mask_key
from torch_mmkg.transforms.drop_modality import (_check_modalities, _check_rate, _choose,
                                                 _generator, _resolve_modalities)


@functional_transform('add_modality_noise')
class AddModalityNoise(BaseTransform):
    r"""Adds Gaussian noise to a portion of the modality features, the modality noisy scenario of
    the `"Multiple Heads are Better than One: Mixture of Modality Knowledge Experts for Entity
    Representation Learning" <https://arxiv.org/abs/2405.16869>`_ paper
    (functional name: :obj:`add_modality_noise`).

    For every chosen modality :math:`m` with :math:`P_m` present rows (:obj:`mask_<m>` is
    :obj:`True`), exactly :math:`\mathrm{round}(\rho \cdot P_m)` of them, chosen uniformly by
    :func:`torch.randperm` (never by independent Bernoulli draws), are replaced by

    .. math::
        \tilde{\mathbf{x}}_i = \mathbf{x}_i + \lambda \, \boldsymbol{\sigma} \odot
        \boldsymbol{\epsilon}_i, \qquad \boldsymbol{\epsilon}_i \sim \mathcal{N}(\mathbf{0},
        \mathbf{I}),

    where :math:`\rho` is :obj:`ratio`, :math:`\lambda` is :obj:`std`, and :math:`\sigma_d` is the
    (biased) standard deviation of dimension :math:`d` over the present rows of the input if
    :obj:`relative=True`, else :math:`1`. Missing rows and all other rows stay untouched.

    The noised rows are recorded in a boolean :obj:`[N]` vector :obj:`data['entity'].noised_<m>`
    per chosen modality :obj:`<m>` (OR-ed into an existing one, so that chained transforms
    accumulate).

    Args:
        ratio (float): The noise ratio :math:`\rho \in [0, 1]`: the share of present rows of each
            modality that get noise.
        std (float, optional): The noise scale :math:`\lambda \geq 0`. (default: :obj:`1.0`)
        modalities (Sequence[str], optional): The modalities to add noise to. If :obj:`None`, all
            modalities of the graph. (default: :obj:`None`)
        relative (bool, optional): If :obj:`True`, scales the noise of each dimension by its
            standard deviation over the present rows; if :obj:`False`, :obj:`std` is the absolute
            standard deviation of the noise. (default: :obj:`True`)
        seed (int, optional): If set, the noise is reproducible: every call draws from a fresh
            :class:`torch.Generator` seeded with :obj:`seed`. If :obj:`None`, the global random
            number generator is used. (default: :obj:`None`)
    """
    def __init__(
        self,
        ratio: float,
        std: float = 1.0,
        modalities: Optional[Sequence[str]] = None,
        relative: bool = True,
        seed: Optional[int] = None,
    ) -> None:
        self.ratio = _check_rate(ratio, 'ratio')
        self.std = float(std)
        if not self.std >= 0.0 or self.std == float('inf'):
            raise ValueError(f"'std' must be a finite non-negative number, got {std}")
        self.modalities = _check_modalities(modalities)
        self.relative = relative
        self.seed = seed

    def forward(self, data: HeteroData) -> HeteroData:
        modalities = _resolve_modalities(data, self.modalities)
        ent = data[ENTITY]
        generator = _generator(self.seed)
        for m in modalities:
            x, mask = ent[feature_key(m)], ent[mask_key(m)]
            present = mask.nonzero().view(-1)
            chosen = _choose(present, round(self.ratio * present.numel()), generator)
            if self.relative:
                scale = self.std * x[mask].std(dim=0, unbiased=False)
            else:
                scale = torch.full((x.size(1), ), self.std, dtype=x.dtype, device=x.device)
            eps = torch.randn(chosen.numel(), x.size(1), generator=generator,
                              dtype=x.dtype).to(x.device)
            x = x.clone()
            x[chosen] += scale * eps
            ent[feature_key(m)] = x
            noised = torch.zeros_like(mask)
            noised[chosen] = True
            key = f'noised_{m}'
            ent[key] = ent[key] | noised if key in ent else noised
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.ratio}, std={self.std}, '
                f'modalities={self.modalities}, relative={self.relative}, seed={self.seed})')
