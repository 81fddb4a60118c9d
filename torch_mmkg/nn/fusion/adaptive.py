import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from .base import Fusion, FusionBasis

#: The initialisations of the attention vector :math:`\mathbf{v}`.
ATTENTION_INITS = ('normal', 'linear')


class AdaptiveFusion(Fusion):
    r"""Adaptive modality fusion with an optional relation-wise temperature, the fusion of
    ReDAF from the `"NATIVE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper (Eqs. 2–3)

    .. math::
        \omega_m(e, r) = \frac{\exp\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_m) /
        \sigma(\zeta_r)\big)}{\sum_{n} \exp\big(\mathbf{v}^{\top}\tanh(\mathbf{e}_n) /
        \sigma(\zeta_r)\big)}, \qquad
        \mathbf{e}^{\mathrm{joint}} = \sum_m \omega_m(e, r)\, \mathbf{e}_m,

    over the stack of an entity's representations :math:`\mathbf{e}_m` (structure and every
    modality), with a learnable vector :math:`\mathbf{v}` and one learnable scalar
    :math:`\zeta_r` per relation (:math:`\sigma(\zeta_r) \in (0, 1)` sharpens the weights).

    Missing modalities are masked out of the softmax (their logit is :math:`-\infty`), so an
    entity's joint embedding mixes only what it has; an entity with nothing present gets a
    zero vector. This masking is our addition: with :obj:`mask_missing=False` a missing
    modality enters with whatever vector the data holds, as in the paper's code.

    Args:
        channels (int): Width :math:`D` of each representation.
        num_relations (int, optional): Number of relations; :obj:`None` disables the
            relation-wise temperature (weights use temperature 1). (default: :obj:`None`)
        mask_missing (bool, optional): Mask missing modalities. (default: :obj:`True`)
        attention_init (str, optional): Initialisation of :math:`\mathbf{v}`:
            :obj:`"normal"`, :math:`\mathcal{N}(0, 1/D)`, or :obj:`"linear"`,
            :math:`U(\pm 1/\sqrt{D})`, the default of the :obj:`nn.Linear(D, 1, bias=False)`
            that holds :math:`\mathbf{v}` in the NATIVE authors' code.
            (default: :obj:`"normal"`)
        temperature_init (float, optional): :math:`\zeta_r` is initialised uniformly in
            :math:`\pm` this bound, or to :math:`0` (:math:`\sigma(\zeta_r) = 1/2`) when it
            is :obj:`0`; the NATIVE authors use :math:`(\gamma + \epsilon) / (2d)`.
            (default: :obj:`0.0`)

    Shapes:
        - **input:** stack :math:`[*, M, D]`, mask :math:`[*, M]` (bool, True = present,
          optional), relation ids :math:`[*]` (optional)
        - **output:** joint embedding :math:`[*, D]`, weights :math:`[*, M]`
    """
    def __init__(self, channels: int, num_relations: Optional[int] = None,
                 mask_missing: bool = True, attention_init: str = 'normal',
                 temperature_init: float = 0.0):
        super().__init__()
        if attention_init not in ATTENTION_INITS:
            raise ValueError(f"attention_init must be one of {ATTENTION_INITS}, got "
                             f"{attention_init!r}")
        temperature_init = float(temperature_init)
        if not math.isfinite(temperature_init) or temperature_init < 0:
            raise ValueError(f"temperature_init must be a finite bound >= 0, got "
                             f"{temperature_init}")
        self.channels = int(channels)
        self.num_relations = num_relations
        self.mask_missing = bool(mask_missing)
        self.attention_init = attention_init
        self.temperature_init = temperature_init
        self.v = torch.nn.Parameter(torch.empty(channels))
        self.zeta = (torch.nn.Parameter(torch.empty(num_relations))
                     if num_relations is not None else None)
        self.reset_parameters()

    @classmethod
    def build(cls, channels: int, num_slots: int, num_relations: Optional[int] = None,
              mask_missing: bool = True, relation_temperature: bool = True,
              attention_init: str = 'normal', temperature_init: float = 0.0,
              **kwargs) -> Fusion:
        r"""With the relation-wise temperature :math:`\zeta_r` when
        :obj:`relation_temperature` and :obj:`num_relations` is given."""
        return cls(channels, num_relations if relation_temperature else None, mask_missing,
                   attention_init=attention_init, temperature_init=temperature_init, **kwargs)

    def reset_parameters(self):
        if self.attention_init == 'linear':  # nn.Linear's default: kaiming_uniform_(a=sqrt(5))
            bound = self.channels**-0.5
            torch.nn.init.uniform_(self.v, -bound, bound)
        else:
            torch.nn.init.normal_(self.v, std=self.channels**-0.5)
        if self.zeta is not None and self.temperature_init > 0:
            torch.nn.init.uniform_(self.zeta, -self.temperature_init, self.temperature_init)
        elif self.zeta is not None:
            torch.nn.init.zeros_(self.zeta)

    def temperature(self, rel: Optional[Tensor]) -> Optional[Tensor]:
        r"""The temperatures :math:`\sigma(\zeta_r)` of :obj:`rel` (:obj:`None` without the
        relation-wise temperature)."""
        if self.zeta is None:
            return None
        if rel is None:
            raise ValueError("AdaptiveFusion was built with num_relations: pass rel")
        return torch.sigmoid(self.zeta[rel])

    @property
    def relation_dependent(self) -> bool:
        r"""Whether the weights depend on the relation (the relation-wise temperature)."""
        return self.zeta is not None

    def logits(self, stack: Tensor) -> Tensor:
        r"""The relation-free logits :math:`\mathbf{v}^{\top}\tanh(\mathbf{e}_m)` of shape
        :math:`[*, M]`; they can be computed once per entity and passed to :meth:`weights`,
        which divides them by each relation's temperature and masks them."""
        if stack.size(-1) != self.channels:
            raise ValueError(f"expected representations of width {self.channels}, got "
                             f"{stack.size(-1)}")
        return torch.tanh(stack) @ self.v

    def weights(self, stack: Optional[Tensor], mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None, logits: Optional[Tensor] = None,
                neutral: bool = False) -> Tensor:
        r"""The modality weights :math:`\omega` of shape :math:`[*, M]` (from precomputed
        :meth:`logits` if given; at temperature :math:`1`, without relation guidance, if
        :obj:`neutral`)."""
        if logits is None:
            logits = self.logits(stack)
        tau = None if neutral else self.temperature(rel)
        if tau is not None:
            logits = logits / tau[..., None]
        if mask is None or not self.mask_missing:
            return torch.softmax(logits, dim=-1)
        if mask.shape != logits.shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the stack "
                             f"{tuple(logits.shape)}")
        # masked after the temperature, so that no gradient meets an infinite logit
        w = torch.softmax(logits.masked_fill(~mask, float('-inf')), dim=-1)
        return torch.nan_to_num(w, nan=0.0)  # rows with nothing present

    def forward(self, stack: Tensor, mask: Optional[Tensor] = None,
                rel: Optional[Tensor] = None,
                logits: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        if rel is not None and self.zeta is not None:
            rel = rel.expand(stack.shape[:-2])
        w = self.weights(stack, mask, rel, logits)
        return (w[..., None] * stack).sum(dim=-2), w

    @property
    def decomposable(self) -> bool:
        return True

    def decompose(self, stack: Tensor, mask: Optional[Tensor] = None) -> FusionBasis:
        r"""The stack itself is the basis; the logits and mask are the state."""
        if not self.relation_dependent:
            return super().decompose(stack, mask)
        return FusionBasis(stack, (self.logits(stack), mask))

    def mix(self, state: Any, rel: Tensor) -> Tensor:
        logits, mask = state
        return self.weights(None, mask, rel.expand(logits.shape[:-1]), logits)

    def extra_repr(self) -> str:
        return (f'{self.channels}, num_relations={self.num_relations}, '
                f'mask_missing={self.mask_missing}')
