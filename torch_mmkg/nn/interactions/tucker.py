import math

import torch
from torch import Tensor

from torch_mmkg.nn.validation import choice
from torch_mmkg.ops import global_batch_norm

from .base import Interaction


class TuckERInteraction(Interaction):
    r"""The TuckER score function from the `"TuckER: Tensor Factorization for Knowledge Graph
    Completion" <https://arxiv.org/abs/1901.09590>`_ paper

    .. math::
        f(\mathbf{h}, \mathbf{r}, \mathbf{t}) = \mathcal{W} \times_1 \mathbf{h} \times_2
        \mathbf{r} \times_3 \mathbf{t} = \sum_{i,j,k} \mathcal{W}_{ijk}\, h_i\, r_j\, t_k,

    with a learnable core tensor :math:`\mathcal{W} \in \mathbb{R}^{d_e \times d_r \times
    d_e}`. As in the paper's code, batch normalisation and dropout can be applied to the query
    entity (:obj:`bn0`, :obj:`input_dropout`), to the relation's core matrix
    :math:`\mathcal{W} \times_2 \mathbf{r} \in \mathbb{R}^{d_e \times d_e}`
    (:obj:`hidden_dropout1`, as TuckER's and MoMoK's code do; :obj:`dropout_target="query"`
    applies it to the contracted query vector instead) and to the contracted query
    (:obj:`bn1`, :obj:`hidden_dropout2`); with all of them off the score is exactly the
    formula above. The query entity is the head for :meth:`forward` and :meth:`score_tails`,
    and the tail for :meth:`score_heads`. The core matrix is computed once per distinct
    relation vector of a batch (rows of the same relation share it) and gathered per query.

    Args:
        entity_dim (int): :math:`d_e`.
        relation_dim (int): :math:`d_r`.
        input_dropout (float, optional): (default: :obj:`0.0`)
        hidden_dropout1 (float, optional): (default: :obj:`0.0`)
        hidden_dropout2 (float, optional): (default: :obj:`0.0`)
        batch_norm (bool, optional): Use the two batch norms. (default: :obj:`False`)
        dropout_target (str, optional): Where :obj:`hidden_dropout1` applies:
            :obj:`"matrix"`, the relation's core matrix :math:`\mathcal{W} \times_2
            \mathbf{r}` of every query (TuckER's and MoMoK's code), or :obj:`"query"`, the
            contracted query vector (this library before 0.2). (default: :obj:`"matrix"`)
        core_init (str, optional): :obj:`"uniform"`, :math:`U(\pm 1/\sqrt{d_e})` (this
            library's; TuckER's code draws :math:`U(\pm 1)`), or :obj:`"xavier"`,
            Xavier-uniform over the :math:`d_r \times (d_e d_e)`
            reshaped core (MoMoK's code). (default: :obj:`"uniform"`)
    """
    def __init__(self, entity_dim: int, relation_dim: int, input_dropout: float = 0.0,
                 hidden_dropout1: float = 0.0, hidden_dropout2: float = 0.0,
                 batch_norm: bool = False, dropout_target: str = 'matrix',
                 core_init: str = 'uniform'):
        super().__init__()
        choice(self, 'dropout_target', dropout_target, ('matrix', 'query'))
        choice(self, 'core_init', core_init, ('uniform', 'xavier'))
        self.dropout_target, self.core_init = dropout_target, core_init
        self.entity_dim, self.relation_dim = entity_dim, relation_dim
        self.core = torch.nn.Parameter(torch.empty(entity_dim, relation_dim, entity_dim))
        self.input_dropout = torch.nn.Dropout(input_dropout)
        self.hidden_dropout1 = torch.nn.Dropout(hidden_dropout1)
        self.hidden_dropout2 = torch.nn.Dropout(hidden_dropout2)
        self.bn0 = torch.nn.BatchNorm1d(entity_dim) if batch_norm else torch.nn.Identity()
        self.bn1 = torch.nn.BatchNorm1d(entity_dim) if batch_norm else torch.nn.Identity()
        self.reset_parameters()

    def reset_parameters(self):
        if self.core_init == 'xavier':
            # MoMoK's core is [d_r, d_e * d_e]: fan_in d_e * d_e, fan_out d_r.
            with torch.no_grad():
                core = torch.empty(self.relation_dim, self.entity_dim * self.entity_dim,
                                   device=self.core.device, dtype=self.core.dtype)
                torch.nn.init.xavier_uniform_(core)
                self.core.copy_(core.view(self.relation_dim, self.entity_dim,
                                          self.entity_dim).transpose(0, 1))
        else:
            bound = 1.0 / math.sqrt(self.entity_dim)
            torch.nn.init.uniform_(self.core, -bound, bound)
        for bn in (self.bn0, self.bn1):
            if hasattr(bn, 'reset_parameters'):
                bn.reset_parameters()

    def entity_width(self, dim: int) -> int:
        return self.entity_dim

    def relation_width(self, dim: int) -> int:
        return self.relation_dim

    def _norm(self, bn, x: Tensor) -> Tensor:
        if isinstance(bn, torch.nn.Identity):
            return x
        shape = x.shape
        # The batch's statistics, over every rank's shard under torchrun; a single row (an
        # ensemble's view that a single query of the batch has) is normalised by the running
        # statistics, as at evaluation.
        return global_batch_norm(x.reshape(-1, shape[-1]), bn).view(shape)

    def query(self, e: Tensor, r: Tensor, head_side: bool = False) -> Tensor:
        r"""The contracted query :math:`\mathcal{W} \times_1 \mathbf{h} \times_2 \mathbf{r}`
        (or :math:`\mathcal{W} \times_2 \mathbf{r} \times_3 \mathbf{t}` for
        :obj:`head_side=True`), of width :math:`d_e`."""
        e = self.input_dropout(self._norm(self.bn0, e))
        lead = torch.broadcast_shapes(e.shape[:-1], r.shape[:-1])
        e = e.expand(*lead, self.entity_dim).reshape(-1, self.entity_dim)
        r = r.expand(*lead, self.relation_dim).reshape(-1, self.relation_dim)
        w = self.relation_matrices(r)  # [n, d_e, d_e]
        if self.dropout_target == 'matrix':
            w = self.hidden_dropout1(w)
        x = (w @ e.unsqueeze(-1)).squeeze(-1) if head_side else (e.unsqueeze(-2) @ w).squeeze(-2)
        if self.dropout_target == 'query':
            x = self.hidden_dropout1(x)
        x = x.view(*lead, self.entity_dim)
        return self.hidden_dropout2(self._norm(self.bn1, x))

    def relation_matrices(self, r: Tensor) -> Tensor:
        r"""The core matrices :math:`\mathcal{W} \times_2 \mathbf{r}` of relation rows
        :math:`[n, d_r]`, :math:`[n, d_e, d_e]`, each computed once per distinct row (a
        row's gradient is its group's, shared equally by the equal rows of the group)."""
        if r.size(0) <= 1:
            return torch.einsum('nj,ijk->nik', r, self.core)
        uniq, inverse, counts = torch.unique(r.detach(), dim=0, return_inverse=True,
                                             return_counts=True)
        if uniq.size(0) == r.size(0):
            return torch.einsum('nj,ijk->nik', r, self.core)
        # The group mean of equal rows is their value, with a differentiable path to each.
        rep = r.new_zeros(uniq.shape).index_add_(0, inverse, r) / counts.unsqueeze(-1).to(r)
        return torch.einsum('uj,ijk->uik', rep, self.core)[inverse]

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        lead = torch.broadcast_shapes(h.shape[:-1], r.shape[:-1])
        q = self.query(h.expand(*lead, h.size(-1)), r.expand(*lead, r.size(-1)))
        return (q * t).sum(dim=-1)

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        return self.query(h, r) @ t_all.t()

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self.query(t, r, head_side=True) @ h_all.t()

    def extra_repr(self) -> str:
        return f'entity_dim={self.entity_dim}, relation_dim={self.relation_dim}'
