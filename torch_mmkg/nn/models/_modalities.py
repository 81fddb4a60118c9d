from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor


def register_modalities(module: torch.nn.Module, num_nodes: int,
                        features: Mapping[str, Tensor],
                        masks: Optional[Mapping[str, Tensor]] = None,
                        reserved: Sequence[str] = ()) -> List[str]:
    r"""Validates per-modality entity features :obj:`[N, F_m]` and bool masks :obj:`[N]` and
    registers them on :obj:`module` as the (non-persistent) buffers :obj:`x_{m}` and
    :obj:`mask_{m}`; returns the modality names in order. Every error names the modality
    and what is wrong with it."""
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
        module.register_buffer(f'x_{m}', x.float(), persistent=False)
        module.register_buffer(f'mask_{m}', mask.to(x.device), persistent=False)
    return names


def features_from_data(data, modalities: Optional[Sequence[str]] = None
                       ) -> Tuple[int, int, Dict[str, Tensor], Dict[str, Tensor]]:
    r""":obj:`(num_nodes, num_relations, features, masks)` of a :mod:`torch_mmkg` graph, with
    all its modalities or the subset :obj:`modalities` (in that order)."""
    from torch_mmkg.data.mmkg import ENTITY, modality_features
    feats = modality_features(data)
    if modalities is not None:
        unknown = [m for m in modalities if m not in feats]
        if unknown:
            raise ValueError(f"modalities {unknown} are not in the graph (it has "
                             f"{list(feats)})")
        feats = {m: feats[m] for m in modalities}
    return (data[ENTITY].num_nodes, data.num_relations, {m: x for m, (x, _) in feats.items()},
            {m: k for m, (_, k) in feats.items()})


class FromDataMixin:
    r"""Adds :meth:`from_data` to a model whose constructor takes
    :obj:`(num_nodes, num_relations, hidden_channels, features, masks, **kwargs)`."""
    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None, **kwargs):
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities, or the
        subset :obj:`modalities` (in that order)."""
        N, R, features, masks = features_from_data(data, modalities)
        return cls(N, R, hidden_channels, features, masks, **kwargs)
