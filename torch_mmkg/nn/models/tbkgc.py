from typing import Any, Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import Negatives
from torch_mmkg.nn.interactions import TransEInteraction
from torch_mmkg.nn.kernels import lp_distance
from torch_mmkg.nn.kge.base import KGEModel, compact_batch_index
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.validation import check_sizes, real
from ._modalities import FromDataMixin, register_modalities


class TBKGC(FromDataMixin, KGEModel):
    r"""The TBKGC model from the `"A Multimodal Translation-Based Approach for Knowledge
    Graph Representation Learning" <https://aclanthology.org/S18-2027/>`_ paper, generalised
    to any number of modalities, some of them missing for some entities.

    Each entity has a learnable structural embedding :math:`\mathbf{e}_s \in \mathbb{R}^d`
    and, per modality :math:`m`, frozen features :math:`\mathbf{x}_m \in \mathbb{R}^{F_m}`
    with an availability mask :math:`k_m(e)`. Its multi-modal embedding is

    .. math::
        \mathbf{e}_{mm} = \sum_{m \,:\, k_m(e)} \mathbf{W}_m \mathbf{x}_m,

    the paper's single linear map of the concatenated features, in which a missing modality
    contributes nothing (an entity without any modality has :math:`\mathbf{e}_{mm} =
    \mathbf{0}`). With relation embeddings :math:`\mathbf{r} \in \mathbb{R}^d` the energy is
    the sum of five TransE distances (Eqs. 2–6),

    .. math::
        E(h, r, t) &= \|\mathbf{h}_s + \mathbf{r} - \mathbf{t}_s\|_p +
        \|\mathbf{h}_{mm} + \mathbf{r} - \mathbf{t}_{mm}\|_p +
        \|\mathbf{h}_s + \mathbf{r} - \mathbf{t}_{mm}\|_p +
        \|\mathbf{h}_{mm} + \mathbf{r} - \mathbf{t}_s\|_p \\
        &+ \|(\mathbf{h}_s + \mathbf{h}_{mm}) + \mathbf{r} -
        (\mathbf{t}_s + \mathbf{t}_{mm})\|_p,

    the score is :math:`f(h, r, t) = -E(h, r, t)`, and training minimises the margin ranking
    loss :math:`\max(0, \lambda + E(h, r, t) - E(h', r, t'))`.

    Missing modalities (mask False) never enter the score; :obj:`mask_missing=False` sums
    every feature row as it is stored, as the paper does with its zero-filled features.
    One-vs-all scoring computes the two all-entity tables :math:`\mathbf{e}_s` and
    :math:`\mathbf{e}_{mm}` once per evaluation pass (:meth:`prepare_scoring`) and each score
    matrix as five pairwise distance matrices.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): The margin :math:`\lambda > 0` of the default loss.
            (default: :obj:`4.0`)
        p_norm (float, optional): The norm :math:`p \geq 1` (:obj:`float("inf")`
            allowed). (default: :obj:`1.0`)
        mask_missing (bool, optional): Leave missing modalities out of
            :math:`\mathbf{e}_{mm}`. (default: :obj:`True`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` penalty on
            the batch's structural, multi-modal and relation embeddings.
            (default: :obj:`"l2"`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, M + 1, d]` and
          :math:`[*, M + 1]`; :meth:`embed` two :math:`[*, d]` tensors
    """
    supports_twins = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 4.0, p_norm: float = 1.0, mask_missing: bool = True,
                 regularization: Optional[str] = 'l2', regularization_weight: float = 0.0,
                 loss: Optional[torch.nn.Module] = None):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        p_norm = real(self, 'p_norm', p_norm, 1.0, finite=False)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         TransEInteraction(p_norm), loss or MarginRankingLoss(margin),
                         regularization=regularization,
                         regularization_weight=regularization_weight)
        if not features:
            raise ValueError("TBKGC needs at least one modality (use TransE without any)")
        self.p_norm = float(p_norm)
        self.margin = float(margin)
        self.mask_missing = bool(mask_missing)
        self.modalities = register_modalities(self, num_nodes, features, masks)
        projection = {m: torch.nn.Linear(x.size(1), hidden_channels, bias=False)
                      for m, x in features.items()}
        self.node_emb = torch.nn.Embedding(num_nodes, hidden_channels)
        self.rel_emb = torch.nn.Embedding(num_relations, hidden_channels)
        self.projection = torch.nn.ModuleDict(projection)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.node_emb.weight)
        torch.nn.init.xavier_uniform_(self.rel_emb.weight)
        for lin in self.projection.values():
            lin.reset_parameters()

    # Representations ##########################################################################

    def modality_stack(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The representations :math:`[*, M + 1, d]` of :obj:`index` (all entities if
        :obj:`None`): slot 0 the structural :math:`\mathbf{e}_s`, slot :math:`m` the
        projection :math:`\mathbf{W}_m \mathbf{x}_m` in :obj:`modalities` order; and their
        availability :math:`[*, M + 1]` (slot 0 always True)."""
        s = self.node_emb.weight if index is None else self.node_emb(index)
        slots = [s]
        masks = [torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)]
        for m in self.modalities:
            x, k = getattr(self, f'x_{m}'), getattr(self, f'mask_{m}')
            slots.append(self.projection[m](x if index is None else x[index]))
            masks.append(k if index is None else k[index])
        return torch.stack(slots, dim=-2), torch.stack(masks, dim=-1)

    def split_stack(self, stack: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The structural and multi-modal embeddings :math:`(\mathbf{e}_s,
        \mathbf{e}_{mm})`, each :math:`[*, d]`, of a stack from :meth:`modality_stack`
        (:math:`\mathbf{e}_{mm}` sums the available modality slots, or all of them when
        :obj:`mask_missing` is False)."""
        mm = stack[..., 1:, :]
        if self.mask_missing:  # where, not a product: a masked row never reaches the sum
            mm = torch.where(mask[..., 1:, None], mm, mm.new_zeros(()))
        return stack[..., 0, :], mm.sum(dim=-2)

    def embed(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The structural and multi-modal embeddings :math:`(\mathbf{e}_s,
        \mathbf{e}_{mm})`, each :math:`[*, d]`, of :obj:`index` (all entities if
        :obj:`None`)."""
        return self.split_stack(*self.modality_stack(index))

    def entity(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The structural and multi-modal embeddings side by side, :math:`[*, 2d]` (the
        energy is no function of one vector: the scoring methods use :meth:`embed`)."""
        return torch.cat(self.embed(index), dim=-1)

    def relation(self, rel_type: Tensor) -> Tensor:
        return self.rel_emb(rel_type)

    # Scoring ##################################################################################

    def _norm(self, x: Tensor) -> Tensor:
        return torch.linalg.vector_norm(x, ord=self.p_norm, dim=-1)

    def unimodal_energy(self, h_s: Tensor, h_mm: Tensor, r: Tensor, t_s: Tensor,
                        t_mm: Tensor) -> Tensor:
        r"""The terms of :math:`E(h, r, t)` that see one kind of embedding,
        :math:`\|\mathbf{h}_s + \mathbf{r} - \mathbf{t}_s\|_p + \|\mathbf{h}_{mm} +
        \mathbf{r} - \mathbf{t}_{mm}\|_p`."""
        return self._norm(h_s + r - t_s) + self._norm(h_mm + r - t_mm)

    def crossmodal_energy(self, h_s: Tensor, h_mm: Tensor, r: Tensor, t_s: Tensor,
                          t_mm: Tensor) -> Tensor:
        r"""The terms of :math:`E(h, r, t)` that mix both kinds,
        :math:`\|\mathbf{h}_s + \mathbf{r} - \mathbf{t}_{mm}\|_p + \|\mathbf{h}_{mm} +
        \mathbf{r} - \mathbf{t}_s\|_p + \|(\mathbf{h}_s + \mathbf{h}_{mm}) + \mathbf{r} -
        (\mathbf{t}_s + \mathbf{t}_{mm})\|_p`."""
        return (self._norm(h_s + r - t_mm) + self._norm(h_mm + r - t_s) +
                self._norm((h_s + h_mm) + r - (t_s + t_mm)))

    def energy(self, h_s: Tensor, h_mm: Tensor, r: Tensor, t_s: Tensor,
               t_mm: Tensor) -> Tensor:
        r"""The energy :math:`E(h, r, t)` of embeddings :math:`[*, d]` (broadcast)."""
        return (self.unimodal_energy(h_s, h_mm, r, t_s, t_mm) +
                self.crossmodal_energy(h_s, h_mm, r, t_s, t_mm))

    def score_stacks(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
                     tail_stack: Tensor, tail_mask: Tensor) -> Tensor:
        r"""Scores of triples given the heads' and tails' representation stacks (see
        :meth:`modality_stack`), broadcast over their leading dimensions; the interface
        :class:`~torch_mmkg.training.CoMAT` scores synthetic entities through."""
        h_s, h_mm = self.split_stack(head_stack, head_mask)
        t_s, t_mm = self.split_stack(tail_stack, tail_mask)
        return -self.energy(h_s, h_mm, self.relation(rel_type), t_s, t_mm)

    def _forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        # the embeddings broadcast like their indices, so none is computed twice for an
        # expanded index
        h_s, h_mm = self.embed(head_index)
        t_s, t_mm = self.embed(tail_index)
        return -self.energy(h_s, h_mm, self.relation(rel_type), t_s, t_mm)

    def prepare_scoring(self) -> Any:
        r"""The all-entity tables :math:`(\mathbf{e}_s, \mathbf{e}_{mm})`, each
        :math:`[N, d]`, once per evaluation pass."""
        return self.embed(None)

    def _score_tails(self, head_index: Tensor, rel_type: Tensor, cache: Any = None) -> Tensor:
        E_s, E_mm = self.prepare_scoring() if cache is None else cache
        h_s, h_mm, r = E_s[head_index], E_mm[head_index], self.relation(rel_type)
        p = self.p_norm
        return -(lp_distance(h_s + r, E_s, p) + lp_distance(h_mm + r, E_mm, p) +
                 lp_distance(h_s + r, E_mm, p) + lp_distance(h_mm + r, E_s, p) +
                 lp_distance(h_s + h_mm + r, E_s + E_mm, p))

    def _score_heads(self, rel_type: Tensor, tail_index: Tensor, cache: Any = None) -> Tensor:
        E_s, E_mm = self.prepare_scoring() if cache is None else cache
        t_s, t_mm, r = E_s[tail_index], E_mm[tail_index], self.relation(rel_type)
        p = self.p_norm  # ||h + r - t|| = ||(t - r) - h||
        return -(lp_distance(t_s - r, E_s, p) + lp_distance(t_mm - r, E_mm, p) +
                 lp_distance(t_mm - r, E_s, p) + lp_distance(t_s - r, E_mm, p) +
                 lp_distance(t_s + t_mm - r, E_s + E_mm, p))

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""Positive and negative scores; the embeddings are computed once per distinct
        entity of the batch. With twins negatives (:class:`~torch_mmkg.loader.Negatives`)
        the unimodal terms score the corrupted entity :math:`(\mathbf{e}'_s,
        \mathbf{e}'_{mm})` and the cross-modal terms :math:`(\mathbf{e}_s,
        \mathbf{e}'_{mm})`, the structural embedding of the replaced entity kept."""
        cand, ch = negatives.index, negatives.corrupt_head
        B, K = cand.shape
        index, hi, ti, ci = compact_batch_index(head_index, tail_index, cand, self.num_nodes)
        E_s, E_mm = self.embed(index)
        r = self.relation(rel_type)
        h_s, h_mm, t_s, t_mm = E_s[hi], E_mm[hi], E_s[ti], E_mm[ti]
        c_s, c_mm = E_s[ci], E_mm[ci]
        pos = -self.energy(h_s, h_mm, r, t_s, t_mm)
        head = ch[:, None, None]

        def side(c: Tensor, own_h: Tensor, own_t: Tensor) -> Tuple[Tensor, Tensor]:
            return (torch.where(head, c, own_h[:, None]), torch.where(head, own_t[:, None], c))

        nh_s, nt_s = side(c_s, h_s, t_s)
        nh_mm, nt_mm = side(c_mm, h_mm, t_mm)
        r_ = r[:, None]
        if negatives.twins:  # cross-modal terms keep the replaced entity's structure
            neg = -(self.unimodal_energy(nh_s, nh_mm, r_, nt_s, nt_mm) +
                    self.crossmodal_energy(h_s[:, None], nh_mm, r_, t_s[:, None], nt_mm))
        else:
            neg = -self.energy(nh_s, nh_mm, r_, nt_s, nt_mm)
        self._reg_inputs = (h_s, h_mm, r, t_s, t_mm, c_s, c_mm)
        return pos, neg

    def candidate_scores(self, anchor: Tensor, r: Tensor, index: Tensor, corrupt_head: bool,
                         reg: Optional[list] = None) -> Tensor:
        d = self.hidden_channels
        cand = self.entity(index)
        if reg is not None:
            reg.append(cand)
        a_s, a_mm = anchor[:, None, :d], anchor[:, None, d:]
        c_s, c_mm = cand[..., :d], cand[..., d:]
        if corrupt_head:
            return -self.energy(c_s, c_mm, r[:, None], a_s, a_mm)
        return -self.energy(a_s, a_mm, r[:, None], c_s, c_mm)

    def loss_1n(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is trained with negative sampling")

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities})')
