r"""Entity representations: a structural embedding and per-modality features, each through
its encoder, as a stack :math:`[*, S, D]` with its availability mask :math:`[*, S]`."""
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.fusion.projection import ModalityProjection

__all__ = ['EntityRepresentation', 'register_modalities', 'STRUCTURE']

#: The name of the structural slot.
STRUCTURE = 'structure'


def register_modalities(module: torch.nn.Module, num_nodes: int,
                        features: Mapping[str, Tensor],
                        masks: Optional[Mapping[str, Tensor]] = None,
                        reserved: Sequence[str] = (), trainable: bool = False) -> List[str]:
    r"""Validates per-modality entity features :obj:`[N, F_m]` and bool masks :obj:`[N]` and
    registers them on :obj:`module` as :obj:`x_{m}` (a non-persistent buffer, or with
    :obj:`trainable` a parameter initialised from the features) and the non-persistent
    buffer :obj:`mask_{m}`; returns the modality names in order. Every error names the
    modality and what is wrong with it."""
    masks = dict(masks or {})
    names = list(features)
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise ValueError(f"masks given for modalities {unknown} without features (have "
                         f"{names})")
    for m, x in features.items():
        if not isinstance(m, str) or not m or '.' in m:
            raise ValueError(f"modality names must be non-empty strings without '.', "
                             f"got {m!r}")
        if m in reserved:
            raise ValueError(f"'{m}' is a reserved name here ({list(reserved)}); rename "
                             f"that modality")
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != num_nodes:
            raise ValueError(f"features of '{m}' must be [{num_nodes}, F], got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        if x.size(1) < 1:
            raise ValueError(f"features of '{m}' have no columns")
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(dim=1).nonzero().view(-1)
            raise ValueError(f"features of '{m}' contain NaN or Inf (rows "
                             f"{bad[:5].tolist()}{'...' if bad.numel() > 5 else ''})")
        mask = masks.get(m)
        if mask is None:
            mask = torch.ones(num_nodes, dtype=torch.bool, device=x.device)
        if (not isinstance(mask, Tensor) or mask.shape != (num_nodes, )
                or mask.dtype != torch.bool):
            raise ValueError(f"mask of '{m}' must be a [{num_nodes}] bool tensor, got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} "
                             f"{tuple(getattr(mask, 'shape', ()))}")
        if trainable:
            module.register_parameter(f'x_{m}', torch.nn.Parameter(x.detach().float().clone()))
        else:
            module.register_buffer(f'x_{m}', x.float(), persistent=False)
        module.register_buffer(f'mask_{m}', mask.to(x.device), persistent=False)
    return names


def _take(x: Tensor, index: Optional[Tensor]) -> Tensor:
    if index is None:
        return x
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


class EntityRepresentation(torch.nn.Module):
    r"""An entity's representations as a stack: a learnable structural embedding
    :math:`\mathbf{e}_s \in \mathbb{R}^D` (slot 0) and, per modality :math:`m`, its features
    :math:`\mathbf{x}_m` through an encoder :math:`P_m` (slot :math:`m`),

    .. math::
        \mathrm{stack}(e) = [\mathbf{e}_s,\ P_1(\mathbf{x}_1),\ \ldots,\ P_M(\mathbf{x}_M)]
        \in \mathbb{R}^{S \times D}, \qquad \mathrm{mask}(e) = [1,\ k_1(e),\ \ldots,\
        k_M(e)],

    where :math:`k_m(e)` says whether entity :math:`e` has modality :math:`m`. Features are
    frozen buffers, or (:obj:`trainable_features`) a learnable table initialised from them,
    as the authors of several methods do. The encoder is a two-layer MLP
    (:obj:`projection_layers=2`), a linear map (:obj:`1`, with or without bias), or the
    identity (:obj:`0`, features of width :math:`D`).

    The representation, not the model, de-duplicates the entities a batch touches
    (:meth:`unique`): encoders run once per distinct entity.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The width :math:`D` of every slot.
        features (Mapping[str, Tensor], optional): Per modality, the :obj:`[N, F_m]`
            features. (default: :obj:`None`, a structural representation)
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        structure (bool, optional): Include the structural slot. (default: :obj:`True`)
        projection_layers (int, optional): :obj:`2`, :obj:`1` or :obj:`0` (identity).
            (default: :obj:`2`)
        projection_bias (bool, optional): Bias of a one-layer projection.
            (default: :obj:`True`)
        trainable_features (bool, optional): (default: :obj:`False`)
        init (Callable, optional): Initialisation of the structural table, in place.
            (default: :func:`torch.nn.init.xavier_uniform_`)
        sparse (bool, optional): Sparse gradients of the structural table.
            (default: :obj:`False`)
        reserved (Sequence[str], optional): Names no modality may take.

    Shapes:
        - **input:** entity indices :math:`[*]` (all entities if :obj:`None`)
        - **output:** stack :math:`[*, S, D]`, mask :math:`[*, S]`
    """
    def __init__(self, num_nodes: int, channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None, structure: bool = True,
                 projection_layers: int = 2, projection_bias: bool = True,
                 trainable_features: bool = False,
                 init: Optional[Callable[[Tensor], None]] = None, sparse: bool = False,
                 reserved: Sequence[str] = ()):
        super().__init__()
        features = dict(features or {})
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        if not structure and not features:
            raise ValueError("an entity representation needs the structural slot or at "
                             "least one modality")
        if projection_layers not in (0, 1, 2):
            raise ValueError(f"projection_layers must be 0, 1 or 2, got {projection_layers}")
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              tuple(reserved) + (STRUCTURE, ),
                                              trainable_features)
        if projection_layers == 0:
            bad = {m: x.size(1) for m, x in features.items() if x.size(1) != channels}
            if bad:
                raise ValueError(f"projection_layers=0 feeds features unchanged: they must "
                                 f"have width {channels}, got {bad}")
        self.init = init or torch.nn.init.xavier_uniform_
        self.node_emb = (torch.nn.Embedding(num_nodes, channels, sparse=sparse)
                         if structure else None)
        self.projection = (ModalityProjection({m: x.size(1) for m, x in features.items()},
                                              channels, num_layers=projection_layers,
                                              bias=projection_bias)
                           if features and projection_layers else None)

    @property
    def slots(self) -> List[str]:
        r"""The slot names: :obj:`"structure"` (if any), then the modalities."""
        return ([STRUCTURE] if self.node_emb is not None else []) + list(self.modalities)

    @property
    def num_slots(self) -> int:
        return len(self.slots)

    @property
    def costly(self) -> bool:
        r"""Whether computing a row costs more than a lookup (an encoder runs): batches are
        then computed on their distinct entities."""
        return self.projection is not None

    def reset_structure(self):
        r"""Re-initialises the structural table."""
        if self.node_emb is not None:
            self.init(self.node_emb.weight)

    def reset_encoders(self):
        r"""Re-initialises the encoders."""
        if self.projection is not None:
            self.projection.reset_parameters()

    def reset_parameters(self):
        self.reset_structure()
        self.reset_encoders()

    def features(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        r"""The features :math:`[*, F_m]` of :obj:`index` (all entities if :obj:`None`)."""
        return _take(getattr(self, f'x_{modality}'), index)

    def mask(self, modality: str, index: Optional[Tensor] = None) -> Tensor:
        r"""The availability :math:`[*]` of modality :obj:`modality`."""
        return _take(getattr(self, f'mask_{modality}'), index)

    def structural(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The structural embeddings :math:`[*, D]` of :obj:`index`."""
        if self.node_emb is None:
            raise RuntimeError("this representation has no structural slot")
        return self.node_emb.weight if index is None else self.node_emb(index)

    def encode(self, index: Optional[Tensor] = None) -> Dict[str, Tensor]:
        r"""The encoded modalities :math:`[*, D]` of :obj:`index`, by modality."""
        feats = {m: self.features(m, index) for m in self.modalities}
        return self.projection(feats) if self.projection is not None else feats

    def forward(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        slots, masks = [], []
        if self.node_emb is not None:
            s = self.structural(index)
            slots.append(s)
            masks.append(torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device))
        enc = self.encode(index) if self.modalities else {}
        for m in self.modalities:
            slots.append(enc[m])
            masks.append(self.mask(m, index))
        if len(slots) == 1:  # a view, not a copy of the table
            return slots[0].unsqueeze(-2), masks[0].unsqueeze(-1)
        return torch.stack(slots, dim=-2), torch.stack(masks, dim=-1)

    def unique(self, *indices: Tensor) -> Tuple[Tensor, Tensor, Tuple[Tensor, ...]]:
        r"""The stack and mask of the distinct entities of :obj:`indices` and, per index
        tensor, the rows of its entities in them; every entity when the batch touches about
        as many ids as there are (or the representation is a lookup), the indices then
        returned unchanged."""
        flat = torch.cat([i.reshape(-1) for i in indices])
        if not self.costly or flat.numel() >= self.num_nodes:
            stack, mask = self(None)
            return stack, mask, indices
        uniq, inv = torch.unique(flat, return_inverse=True)
        stack, mask = self(uniq)
        out, start = [], 0
        for i in indices:
            out.append(inv[start:start + i.numel()].view(i.shape))
            start += i.numel()
        return stack, mask, tuple(out)

    def extra_repr(self) -> str:
        return f'{self.num_nodes}, {self.channels}, slots={self.slots}'
