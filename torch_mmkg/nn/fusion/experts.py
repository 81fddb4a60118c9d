import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ModalityExperts(torch.nn.Module):
    r"""A mixture of :math:`K` modality knowledge experts with a noisy, temperature-scaled
    gate: the ReMoKE layer of the `"Multiple Heads are Better than One: Mixture of Modality
    Knowledge Experts for Entity Representation Learning"
    <https://arxiv.org/abs/2405.16869>`_ paper (MoMoK, Eq. 2).

    Expert :math:`i` is an affine map :math:`\mathcal{V}_i = \mathcal{W}_i(\mathbf{x} -
    \mathbf{b}_i)` of the modality input :math:`\mathbf{x}`, and the output is their gated sum

    .. math::
        \hat{\mathbf{e}} = \sum_{i=1}^K G_i\, \mathcal{V}_i, \qquad
        G_i = \mathrm{softmax}_i\Big(\big(\mathbf{x}^{\top}\mathbf{W}_g + \delta\big)_i
        \,/\, \tau\Big), \qquad
        \delta_i \sim \mathcal{N}\big(0, \mathrm{softplus}(\mathbf{x}^{\top}
        \mathbf{W}_{\mathrm{noise}})_i + \epsilon\big),

    with the Gaussian noise :math:`\delta` only in training (tunable noise, Shazeer et al.,
    2017) and the temperature :math:`\tau = \sigma(\varepsilon_r)` supplied by the caller
    (MoMoK's relation-aware temperature; :math:`\tau = 1` when :obj:`None`). The paper writes
    the gate logit as :math:`\mathcal{U}_m(\mathcal{V}_i)`, a linear read-out of each expert's
    output; since the experts are affine in :math:`\mathbf{x}` that is the special case
    :math:`\mathbf{W}_g[:, i] = \mathcal{W}_i^{\top}\mathbf{u}` (plus a constant) of the
    logit :math:`\mathbf{x}^{\top}\mathbf{W}_g` used here and in the authors' code.
    :math:`\mathbf{W}_g` and :math:`\mathbf{W}_{\mathrm{noise}}` start at zero (uniform
    gate, noise scale :math:`\log 2 + \epsilon`).

    Args:
        in_channels (int): Input width :math:`F`.
        out_channels (int): Output width :math:`D`.
        num_experts (int, optional): :math:`K`. (default: :obj:`3`)
        noisy_gating (bool, optional): Add the training noise :math:`\delta` (MoMoK's
            ablation "w/o noise" when False). (default: :obj:`True`)
        noise_epsilon (float, optional): :math:`\epsilon`. (default: :obj:`0.01`)
        weight_std (float, optional): The standard deviation of the experts' normal
            initialisation (MoMoK's code: :obj:`0.02`); :obj:`None` for
            :math:`1/\sqrt{F}`. (default: :obj:`None`)

    Shapes:
        - **input:** :math:`\mathbf{x}` :math:`[*, F]`, temperature :math:`[*]` or
          :math:`[*, 1]` (optional)
        - **output:** :math:`\hat{\mathbf{e}}` :math:`[*, D]`, expert outputs
          :math:`[*, K, D]`, gates :math:`[*, K]`
    """
    def __init__(self, in_channels: int, out_channels: int, num_experts: int = 3,
                 noisy_gating: bool = True, noise_epsilon: float = 1e-2,
                 weight_std: Optional[float] = None):
        super().__init__()
        self.weight_std = weight_std
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.num_experts = int(num_experts)
        self.noisy_gating, self.noise_epsilon = bool(noisy_gating), float(noise_epsilon)
        self.weight = torch.nn.Parameter(torch.empty(num_experts, in_channels, out_channels))
        self.bias = torch.nn.Parameter(torch.empty(num_experts, in_channels))
        self.w_gate = torch.nn.Parameter(torch.empty(in_channels, num_experts))
        self.w_noise = torch.nn.Parameter(torch.empty(in_channels, num_experts))
        self.reset_parameters()

    def reset_parameters(self):
        # Like the authors' whitening experts: small normal weights, zero centres and gates.
        std = self.weight_std or 1.0 / math.sqrt(self.in_channels)
        torch.nn.init.normal_(self.weight, std=std)
        torch.nn.init.zeros_(self.bias)
        torch.nn.init.zeros_(self.w_gate)
        torch.nn.init.zeros_(self.w_noise)

    def experts(self, x: Tensor) -> Tensor:
        r"""The expert outputs :math:`\mathcal{V}_i = \mathcal{W}_i(\mathbf{x} -
        \mathbf{b}_i)`, :math:`[*, K, D]` (one matrix product for all experts)."""
        if x.size(-1) != self.in_channels:
            raise ValueError(f"expected inputs of width {self.in_channels}, got {x.size(-1)}")
        K, F_, D = self.weight.shape
        out = (x @ self.weight.permute(1, 0, 2).reshape(F_, K * D)).unflatten(-1, (K, D))
        return out - torch.einsum('kf,kfd->kd', self.bias, self.weight)

    def gate_logits(self, x: Tensor, noise: Optional[bool] = None) -> Tensor:
        r"""The gate logits :math:`\mathbf{x}^{\top}\mathbf{W}_g + \delta`, :math:`[*, K]`;
        :obj:`noise` defaults to :obj:`self.training and self.noisy_gating`."""
        logits = x @ self.w_gate
        if noise is None:
            noise = self.training and self.noisy_gating
        if noise:
            std = F.softplus(x @ self.w_noise) + self.noise_epsilon
            logits = logits + torch.randn_like(logits) * std
        return logits

    def gates(self, x: Tensor, temperature: Optional[Tensor] = None,
              noise: Optional[bool] = None) -> Tensor:
        r"""The expert weights :math:`G` :math:`[*, K]`."""
        logits = self.gate_logits(x, noise)
        if temperature is not None:
            if temperature.dim() == logits.dim() - 1:
                temperature = temperature.unsqueeze(-1)
            logits = logits / temperature
        return torch.softmax(logits, dim=-1)

    def forward(self, x: Tensor, temperature: Optional[Tensor] = None,
                noise: Optional[bool] = None) -> Tuple[Tensor, Tensor, Tensor]:
        values = self.experts(x)
        gates = self.gates(x, temperature, noise)
        return (gates.unsqueeze(-1) * values).sum(dim=-2), values, gates

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, num_experts={self.num_experts}, '
                f'noisy_gating={self.noisy_gating}')
