import math
from typing import Optional

import torch
from torch import Tensor
from torch.func import functional_call


class CLUBEstimator(torch.nn.Module):
    r"""The contrastive log-ratio upper bound (CLUB) of mutual information from the `"CLUB: A
    Contrastive Log-ratio Upper Bound of Mutual Information"
    <https://arxiv.org/abs/2006.12013>`_ paper, with a Gaussian variational network
    :math:`q_\theta(\mathbf{y} \mid \mathbf{x}) = \mathcal{N}(\boldsymbol{\mu}_\theta(\mathbf{x}),
    \mathrm{diag}\, e^{\boldsymbol{\ell}_\theta(\mathbf{x})})`, as MoMoK's ExID uses it
    between the experts of a modality (Eqs. 7–9).

    For paired samples :math:`(\mathbf{x}_e, \mathbf{y}_e)_{e=1}^n` the bound is

    .. math::
        I_{\mathrm{CLUB}} = \frac{1}{n}\sum_{e} \Big(\log q_\theta(\mathbf{y}_e \mid
        \mathbf{x}_e) - \frac{1}{n - 1}\sum_{e' \neq e} \log q_\theta(\mathbf{y}_{e'} \mid
        \mathbf{x}_e)\Big),

    computed in closed form in :math:`O(n D)` (the normalising terms cancel): :meth:`forward`.
    The network is fitted by maximum likelihood, i.e. by minimising
    :math:`\mathrm{KL}(p(\mathbf{y}\mid\mathbf{x}) \,\|\, q_\theta)` (Eq. 9), with
    :meth:`learning_loss` :math:`= -\frac{1}{n}\sum_e \log q_\theta(\mathbf{y}_e \mid
    \mathbf{x}_e)` (the full Gaussian negative log-likelihood, variance term included);
    the two objectives are optimised alternately with separate optimisers.
    :math:`\boldsymbol{\mu}_\theta` and :math:`\boldsymbol{\ell}_\theta` are MLPs
    :math:`D \to H/2 \to D` (the log-variance bounded by :math:`\tanh`).

    Args:
        x_channels (int): Width of :math:`\mathbf{x}`.
        y_channels (int): Width of :math:`\mathbf{y}`.
        hidden_channels (int, optional): :math:`H`. (default: :obj:`x_channels`)

    Shapes:
        - **input:** :math:`\mathbf{x}` :math:`[n, D_x]`, :math:`\mathbf{y}` :math:`[n, D_y]`
        - **output:** scalar
    """
    def __init__(self, x_channels: int, y_channels: int,
                 hidden_channels: Optional[int] = None):
        super().__init__()
        hidden = max(1, (hidden_channels or x_channels) // 2)
        self.mu = torch.nn.Sequential(torch.nn.Linear(x_channels, hidden), torch.nn.ReLU(),
                                      torch.nn.Linear(hidden, y_channels))
        self.logvar = torch.nn.Sequential(torch.nn.Linear(x_channels, hidden),
                                          torch.nn.ReLU(), torch.nn.Linear(hidden, y_channels),
                                          torch.nn.Tanh())

    def reset_parameters(self):
        for seq in (self.mu, self.logvar):
            for layer in seq:
                if hasattr(layer, 'reset_parameters'):
                    layer.reset_parameters()

    @staticmethod
    def _run(net: torch.nn.Module, x: Tensor, frozen: bool) -> Tensor:
        if not frozen:
            return net(x)
        params = {k: v.detach() for k, v in net.named_parameters()}
        return functional_call(net, params, (x, ))

    def mu_logvar(self, x: Tensor, frozen: bool = False):
        r""":math:`(\boldsymbol{\mu}, \boldsymbol{\ell})` of :math:`q_\theta(\cdot \mid
        \mathbf{x})`; with :obj:`frozen=True` no gradient reaches :math:`\theta` (it still
        flows into :math:`\mathbf{x}`)."""
        return self._run(self.mu, x, frozen), self._run(self.logvar, x, frozen)

    def log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Per sample :math:`\log q_\theta(\mathbf{y}_e \mid \mathbf{x}_e)` :math:`[n]`."""
        mu, logvar = self.mu_logvar(x)
        return -0.5 * (((y - mu)**2 / logvar.exp() + logvar).sum(dim=-1)
                       + y.size(-1) * math.log(2 * math.pi))

    def learning_loss(self, x: Tensor, y: Tensor) -> Tensor:
        r"""The estimator's objective: the mean negative log-likelihood (Eq. 9)."""
        return -self.log_likelihood(x, y).mean()

    def forward(self, x: Tensor, y: Tensor, frozen: bool = True) -> Tensor:
        r"""The bound :math:`I_{\mathrm{CLUB}}` for the main model to minimise; the
        estimator's parameters get no gradient unless :obj:`frozen=False`."""
        n = x.size(0)
        if n < 2:
            return x.new_zeros(())
        mu, logvar = self.mu_logvar(x, frozen)
        inv_var = torch.exp(-logvar)
        positive = ((y - mu)**2 * inv_var).sum(dim=-1)  # -2 log q(y_e | x_e) + const
        # sum_e' (y_e' - mu_e)^2 = sum_e' (y_e' - ybar)^2 + n (ybar - mu_e)^2, per dimension
        y_mean = y.mean(dim=0)
        spread = (y - y_mean).pow(2).sum(dim=0)
        total = spread + n * (y_mean - mu)**2
        negative = ((total - (y - mu)**2) / (n - 1) * inv_var).sum(dim=-1)
        return 0.5 * (negative - positive).mean()
