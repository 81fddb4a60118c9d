from typing import Dict, Mapping, Optional

import torch
from torch import Tensor


class ModalityProjection(torch.nn.Module):
    r"""One projection :math:`P_m` per modality from its (frozen) features into the entity
    space, a two-layer MLP as in NATIVE and LBMKGC,

    .. math::
        P_m(\mathbf{x}) = \mathbf{W}_2\, \mathrm{ReLU}(\mathbf{W}_1 \mathbf{x} +
        \mathbf{b}_1) + \mathbf{b}_2,

    for any number and kind of modalities; with :obj:`num_layers=1` a single linear map
    :math:`P_m(\mathbf{x}) = \mathbf{W}\mathbf{x} + \mathbf{b}` (NATIVE's ablation "w/o
    :math:`P_m`", which keeps only the map to the entity width).

    Args:
        in_channels (Mapping[str, int]): Feature width :math:`F_m` of each modality.
        out_channels (int): Width of the entity space.
        hidden_channels (int, optional): Hidden width (default: :obj:`out_channels`).
        num_layers (int, optional): :obj:`2` (MLP) or :obj:`1` (linear). (default: :obj:`2`)
        bias (bool, optional): Whether the single linear map of :obj:`num_layers=1` has a
            bias (TBKGC's :math:`\mathbf{W}_m \mathbf{x}_m` has none). (default: :obj:`True`)

    Shapes:
        - **input:** a dict of :math:`[*, F_m]` features
        - **output:** a dict of :math:`[*, D]` projections (same keys)
    """
    def __init__(self, in_channels: Mapping[str, int], out_channels: int,
                 hidden_channels: Optional[int] = None, num_layers: int = 2,
                 bias: bool = True):
        super().__init__()
        if num_layers not in (1, 2):
            raise ValueError(f"num_layers must be 1 or 2, got {num_layers}")
        hidden = hidden_channels or out_channels
        self.modalities = list(in_channels)
        self.num_layers = num_layers

        def mlp(f: int) -> torch.nn.Module:
            if num_layers == 1:
                return torch.nn.Sequential(torch.nn.Linear(f, out_channels, bias=bias))
            return torch.nn.Sequential(torch.nn.Linear(f, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, out_channels))

        self.mlps = torch.nn.ModuleDict({m: mlp(f) for m, f in in_channels.items()})

    def reset_parameters(self):
        for mlp in self.mlps.values():
            for layer in mlp:
                if hasattr(layer, 'reset_parameters'):
                    layer.reset_parameters()

    def forward(self, features: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"features of modalities {missing} are missing (have "
                             f"{sorted(features)})")
        return {m: self.mlps[m](features[m]) for m in self.modalities}
