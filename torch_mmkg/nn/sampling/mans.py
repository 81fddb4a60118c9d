from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.loader import NegativeSampler, Negatives
from torch_mmkg.nn.regimes import NegativeSampling, RegimeOutput
from torch_mmkg.nn.validation import choice, real
from ._common import check_stacks, score_corrupted, single_view

__all__ = ['MANS', 'MANS_MODES']

#: The modes of :class:`MANS`: visual, two-stage, hybrid, adaptive.
MANS_MODES = ('V', 'T', 'H', 'A')


class MANS(NegativeSampling):
    r"""Modality-aware negative sampling from the `"Modality-Aware Negative Sampling for
    Multi-modal Knowledge Graph Embedding" <https://arxiv.org/abs/2304.11618>`_ paper, as a
    training regime of any model whose entity representation is a stack of a structural
    slot and modality slots (:meth:`~torch_mmkg.nn.KGEModel.modality_stack`, scored by
    :meth:`~torch_mmkg.nn.KGEModel.score_stacks`).

    A *visual* (V) negative of a positive :math:`(h, r, t)` whose corrupted side :math:`h`
    is replaced by :math:`e'` keeps :math:`h`'s structural slot and takes :math:`e'`'s
    modality slots (the paper's image; here every modality, with their masks),

    .. math::
        \tilde{h} = [\mathbf{h}_s,\ \mathbf{e}'_1,\ \ldots,\ \mathbf{e}'_M], \qquad
        \text{negative } (\tilde{h}, r, t),

    so that the model learns to align each entity's structural and modal embeddings. The
    modes mix V negatives with the normal ones (the whole corrupted entity
    :math:`e'`), of the :math:`B \times K` negatives of a batch:

    * :obj:`"V"`: all negatives are V negatives;
    * :obj:`"T"` (two-stage): V negatives in the first :math:`\beta` of the epochs (epochs
      :math:`e < \beta E`, counted from 0), normal ones after;
    * :obj:`"H"` (hybrid): :math:`\lfloor \beta K B \rfloor` V negatives;
    * :obj:`"A"` (adaptive): :math:`pKB` V negatives, :math:`p` the share of the normal
      negatives whose cross-modal energy is below their same-modal energy,

      .. math::
          p = \frac{1}{KB} \Big|\Big\{(h', r, t') :\ E_{\times}(h', r, t') <
          E_{=}(h', r, t')\Big\}\Big|,

      computed without gradient. For a multi-view interaction with unimodal and
      cross-modal terms (IKRL and MANS's own base model, TBKGC, VBKGC; see
      :class:`~torch_mmkg.nn.interactions.MultiViewInteraction`), :math:`E_{=}` is minus
      the score of the unimodal terms, :math:`-f(s, s) - f(m, m)`, and :math:`E_{\times}`
      minus that of the cross-modal ones, :math:`-f(s, m) - f(m, s)`. For any other model
      the views are the entity's stack with only its structural slot (:math:`S`) or only
      its modality slots (:math:`M`) unmasked, fused by the model, and
      :math:`E_{=} = -f(S, r, S) - f(M, r, M)`, :math:`E_{\times} = -f(S, r, M) -
      f(M, r, S)` (meaningful for a fusion that honours masks).

    In H and A the V negatives are the first ones in the order of OpenKE's batches (the
    authors' code), negative :math:`k` of positive :math:`b` being number :math:`kB + b`;
    with :math:`K = 1` (their scripts) the negatives of the first positives.

    The authors' code (``MMTransE.py``) writes the V negatives of H and A into rows
    :math:`B, \ldots, B + n` with the structural rows of rows :math:`0, \ldots, n` of the
    batch: the positives' own only for :math:`K = 1`; for :math:`K > 1` the negatives of
    the second block onwards take the structural row of another positive, or of a negative
    once :math:`n > B`. This is a bug, fixed here (each V negative keeps its own positive's
    structural slot); no switch reproduces it. In T, the authors' trainer switches at its
    own :math:`\beta = 0.5` whatever their script passes (0.3): pass :obj:`beta=0.5` for
    that. Their :math:`n = \mathrm{int}(K p B)` may round the count down by one in floating
    point; here it is the count itself.

    Args:
        loss (KGELoss, optional): (default: the model's own, else
            :class:`~torch_mmkg.nn.loss.SoftplusLoss`; MANS trains a margin loss)
        num_negatives (int, optional): :math:`K`. (default: :obj:`1`)
        strategy (str, optional): :obj:`"uniform"` or :obj:`"bernoulli"` (the authors').
            (default: :obj:`"uniform"`)
        twins (bool, optional): Not supported. (default: :obj:`False`)
        side_per (str, optional): :obj:`"positive"` or :obj:`"negative"` (OpenKE's).
            (default: :obj:`"positive"`)
        mode (str, optional): :obj:`"V"`, :obj:`"T"`, :obj:`"H"` or :obj:`"A"`.
            (default: :obj:`"A"`)
        beta (float, optional): :math:`\beta \in [0, 1]` of T and H. (default: :obj:`0.5`)

    Shapes:
        - **batch:** :obj:`(head, rel, tail, negatives)` as for
          :class:`~torch_mmkg.nn.regimes.NegativeSampling`
        - **output:** :class:`~torch_mmkg.nn.regimes.RegimeOutput`; its :obj:`context` also
          holds the :obj:`"visual_mask"` :math:`[B, K]` of the V negatives
    """
    name = 'mans'

    def __init__(self, loss: Optional[torch.nn.Module] = None, num_negatives: int = 1,
                 strategy: str = 'uniform', twins: bool = False, side_per: str = 'positive',
                 mode: str = 'A', beta: float = 0.5):
        super().__init__(loss, num_negatives, strategy, twins, side_per)
        if twins:
            raise ValueError("MANS: twins negatives are not supported (MANS makes its own "
                             "modality-swapped negatives)")
        self.mode = choice(self, 'mode', mode, MANS_MODES)
        self.beta = real(self, 'beta', beta, 0.0, 1.0)
        self.epoch, self.num_epochs = 1, None

    def start_epoch(self, epoch: int, num_epochs: Optional[int] = None):
        self.epoch, self.num_epochs = int(epoch), num_epochs

    @property
    def first_stage(self) -> bool:
        r"""Whether T is in its first stage (V negatives): epoch :math:`e - 1 < \beta E`
        (the first epoch while the number of epochs is unknown)."""
        if self.num_epochs is None:
            return True
        return self.epoch - 1 < self.beta * self.num_epochs

    # The negatives ############################################################################

    @staticmethod
    def _first(B: int, K: int, n: int, device) -> Tensor:
        r"""The :obj:`[B, K]` mask of the first :obj:`n` negatives in OpenKE's order
        (negative :math:`k` of positive :math:`b` is number :math:`kB + b`)."""
        order = (torch.arange(K, device=device)[None, :] * B +
                 torch.arange(B, device=device)[:, None])
        return order < n

    def visual_stacks(self, model, head_index: Tensor, tail_index: Tensor,
                      negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""The stacks :math:`[B, K, S, D]` and masks of the V negatives' corrupted entities:
        the structural slot of the entity they replace, the modality slots of the
        candidate."""
        side = negatives.side_mask()
        own = torch.where(side, head_index[:, None], tail_index[:, None])
        own_stack, own_mask = model.modality_stack(own)
        cand_stack, cand_mask = model.modality_stack(negatives.index)
        return (torch.cat([own_stack[..., :1, :], cand_stack[..., 1:, :]], dim=-2),
                torch.cat([own_mask[..., :1], cand_mask[..., 1:]], dim=-1))

    def energies(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                 negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""The same-modal and cross-modal energies :math:`E_{=}, E_{\times}` :math:`[B, K]`
        of the normal negatives (see the class description)."""
        side = negatives.side_mask()
        B, K = side.shape
        h_stack, h_mask = model.modality_stack(head_index)
        t_stack, t_mask = model.modality_stack(tail_index)
        c_stack, c_mask = model.modality_stack(negatives.index)
        s4, s3 = side[..., None, None], side[..., None]
        H = torch.where(s4, c_stack, h_stack[:, None])
        Hm = torch.where(s3, c_mask, h_mask[:, None])
        T = torch.where(s4, t_stack[:, None], c_stack)
        Tm = torch.where(s3, t_mask[:, None], c_mask)
        rel = rel_type[:, None].expand(B, K)
        if model.inverse_relations:  # head corruptions as tails of the inverse relation
            H, T = torch.where(s4, T, H), torch.where(s4, H, T)
            Hm, Tm = torch.where(s3, Tm, Hm), torch.where(s3, Hm, Tm)
            rel = torch.where(side, rel + model.num_relations, rel)
        f = model.interaction
        if getattr(model, 'supports_twins', False):  # unimodal and cross-modal terms
            h, t, r = model.fuse(H, Hm, rel), model.fuse(T, Tm, rel), model.relation(rel)
            return -f(h, r, t, terms='unimodal'), -f(h, r, t, terms='crossmodal')
        structure = torch.zeros_like(Hm)
        structure[..., 0] = True

        def part(mask: Tensor, keep: Tensor) -> Tensor:
            return mask & keep

        HS, HM = part(Hm, structure), part(Hm, ~structure)
        TS, TM = part(Tm, structure), part(Tm, ~structure)
        same = model.score_stacks(H, HS, rel, T, TS) + model.score_stacks(H, HM, rel, T, TM)
        cross = model.score_stacks(H, HS, rel, T, TM) + model.score_stacks(H, HM, rel, T, TS)
        return -same, -cross

    def visual_mask(self, model, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    negatives: Negatives) -> Tensor:
        r"""Which negatives :math:`[B, K]` are V negatives in the current mode."""
        B, K = negatives.index.shape
        device = negatives.index.device
        if self.mode == 'V' or (self.mode == 'T' and self.first_stage):
            return torch.ones(B, K, dtype=torch.bool, device=device)
        if self.mode == 'T':
            return torch.zeros(B, K, dtype=torch.bool, device=device)
        if self.mode == 'H':
            return self._first(B, K, int(K * self.beta * B), device)
        with torch.no_grad():
            same, cross = self.energies(model, head_index, rel_type, tail_index, negatives)
            count = int((cross < same).sum())
        return self._first(B, K, count, device)

    def loss(self, model, batch: Sequence) -> RegimeOutput:
        head_index, rel_type, tail_index = batch[:3]
        negatives = batch[3] if len(batch) > 3 else None
        head_index, rel_type, tail_index, negatives = model._check_negatives(
            'loss', head_index, rel_type, tail_index, negatives)
        check_stacks('MANS', model, need_modalities=True)
        if negatives is None:
            negatives = NegativeSampler(model.num_nodes, self.num_negatives)(
                head_index, rel_type, tail_index)
        if negatives.twins:
            raise ValueError("MANS: twins negatives are not supported")
        scored = model.score_batch(head_index, rel_type, tail_index, negatives)
        pos, neg = single_view('MANS', model, scored)
        visual = self.visual_mask(model, head_index, rel_type, tail_index, negatives)
        if bool(visual.any()):
            b, k = visual.nonzero().unbind(1)
            sub = Negatives(negatives.index[b, k][:, None], negatives.side_mask()[b, k][:, None])
            stack, mask = self.visual_stacks(model, head_index[b], tail_index[b], sub)
            v = score_corrupted(model, head_index[b], rel_type[b], tail_index[b],
                                sub.corrupt_head, stack, mask)[:, 0]
            neg = neg.index_put((b, k), v.to(neg.dtype))
        loss = self.loss_for(model)(pos, neg)
        for term in scored.terms.values():
            loss = loss + term
        return RegimeOutput(loss, scored.terms, dict(scored.context, visual_mask=visual))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(mode={self.mode!r}, beta={self.beta}, '
                f'num_negatives={self.num_negatives}, loss={self.loss_fn!r})')
