import math
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.nn.interactions import TransEInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import KGELoss, MarginRankingLoss
from torch_mmkg.nn.regimes import QueryScores, ScoredBatch
from torch_mmkg.nn.representation import (STRUCTURE, EntityRepresentation,
                                          register_modalities)
from torch_mmkg.nn.validation import check_sizes, choice, positive_int, real
from ._modalities import FromDataMixin

__all__ = ['TransAE', 'AutoencoderRepresentation']

#: How the autoencoder treats an entity that lacks a modality.
MISSING = ('noise', 'mask')
#: The hidden width of the original code's image encoder; every other modality gets its
#: text encoder's.
IMAGE_HIDDEN, OTHER_HIDDEN = 512, 50
#: The name of the autoencoder representation's one slot.
CODE = 'code'


class AutoencoderRepresentation(EntityRepresentation):
    r"""TransAE's multi-modal autoencoder as an entity representation whose one slot is the
    code. Per modality :math:`m` an encoder and, from the code, a two-layer decoder,

    .. math::
        \mathbf{v}_m = \sigma(\mathbf{W}_m \hat{\mathbf{x}}_m + \mathbf{b}_m), \quad
        \mathbf{e} = \sigma(\mathbf{W}_c [\mathbf{v}_1; \ldots; \mathbf{v}_M] +
        \mathbf{b}_c), \quad
        \tilde{\mathbf{x}}_m = \sigma(\mathbf{W}''_m\, \sigma(\mathbf{W}'_m \mathbf{e} +
        \mathbf{b}'_m) + \mathbf{b}''_m),

    with frozen features :math:`\hat{\mathbf{x}}_m`: the stored row where the entity has the
    modality, and where it does not either a fixed noise row drawn once from
    :math:`U(\pm 6/\sqrt{d})` (:obj:`missing="noise"`, the original code's entities without
    images; kept in the state dict) or zeros (:obj:`missing="mask"`, and the row is then
    left out of the reconstruction error).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        channels (int): The code width :math:`d`.
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        hidden_channels (Mapping[str, int]): Per modality, the width of
            :math:`\mathbf{v}_m`.
        missing (str, optional): :obj:`"noise"` or :obj:`"mask"`. (default: :obj:`"noise"`)

    Shapes:
        - **input:** entity indices :math:`[*]` (all entities if :obj:`None`)
        - **output:** stack :math:`[*, 1, d]` (the code), mask :math:`[*, 1]` (all True)
    """
    def __init__(self, num_nodes: int, channels: int, features: Mapping[str, Tensor],
                 masks: Optional[Mapping[str, Tensor]], hidden_channels: Mapping[str, int],
                 missing: str = 'noise'):
        torch.nn.Module.__init__(self)
        self.num_nodes, self.channels = int(num_nodes), int(channels)
        self.modalities = register_modalities(self, num_nodes, features, masks,
                                              (STRUCTURE, CODE))
        if not self.modalities:
            raise ValueError("an autoencoder representation needs at least one modality")
        self.missing = missing
        self.node_emb = None
        self.projection = None
        self.init = torch.nn.init.xavier_uniform_
        bound = 6.0 / math.sqrt(channels)
        for m in self.modalities:
            mask = getattr(self, f'mask_{m}')
            x = getattr(self, f'x_{m}')
            # Row of each entity in its modality's noise table (-1: present).
            row = torch.full((num_nodes, ), -1, dtype=torch.long, device=mask.device)
            row[~mask] = torch.arange(int((~mask).sum()), device=mask.device)
            self.register_buffer(f'noise_row_{m}', row, persistent=False)
            if missing == 'noise':
                noise = torch.empty(int((~mask).sum()), x.size(1), dtype=x.dtype,
                                    device=x.device).uniform_(-bound, bound)
                self.register_buffer(f'noise_{m}', noise)
        widths = {m: int(hidden_channels[m]) for m in self.modalities}
        self.hidden = widths
        F = {m: getattr(self, f'x_{m}').size(1) for m in self.modalities}
        self.encoders = torch.nn.ModuleDict({m: torch.nn.Linear(F[m], widths[m])
                                             for m in self.modalities})
        self.fusion_layer = torch.nn.Linear(sum(widths.values()), channels)
        self.decoder_hidden = torch.nn.ModuleDict({m: torch.nn.Linear(channels, widths[m])
                                                   for m in self.modalities})
        self.decoder_output = torch.nn.ModuleDict({m: torch.nn.Linear(widths[m], F[m])
                                                   for m in self.modalities})

    @property
    def slots(self) -> List[str]:
        return [CODE]

    @property
    def costly(self) -> bool:
        return True

    def reset_structure(self):
        pass

    def reset_encoders(self):
        for group in (self.encoders, self.decoder_hidden, self.decoder_output):
            for layer in group.values():
                layer.reset_parameters()
        self.fusion_layer.reset_parameters()

    def inputs(self, modality: str, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The encoder input :math:`\hat{\mathbf{x}}_m` :math:`[*, F_m]` of :obj:`index`
        (all entities if :obj:`None`) and whether each row is real data :math:`[*]`."""
        x, present = self.features(modality, index), self.mask(modality, index)
        if bool(present.all()):
            return x, present
        if self.missing == 'mask':
            return torch.where(present[..., None], x, x.new_zeros(())), present
        row = getattr(self, f'noise_row_{modality}')
        row = row if index is None else row[index]
        noise = getattr(self, f'noise_{modality}')[row.clamp(min=0)]
        return torch.where(present[..., None], x, noise), present

    def encode_modalities(self, index: Optional[Tensor] = None
                          ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Tensor]:
        r"""The inputs :math:`\hat{\mathbf{x}}_m`, their availability and the code
        :math:`\mathbf{e}` :math:`[*, d]` of :obj:`index`."""
        xs, present = {}, {}
        for m in self.modalities:
            xs[m], present[m] = self.inputs(m, index)
        v = [torch.sigmoid(self.encoders[m](xs[m])) for m in self.modalities]
        code = torch.sigmoid(self.fusion_layer(torch.cat(v, dim=-1)))
        return xs, present, code

    def decode(self, code: Tensor) -> Dict[str, Tensor]:
        r"""The reconstructions :math:`\tilde{\mathbf{x}}_m` :math:`[*, F_m]` of codes
        :math:`[*, d]`."""
        return {m: torch.sigmoid(self.decoder_output[m](torch.sigmoid(
            self.decoder_hidden[m](code)))) for m in self.modalities}

    def reconstruction_errors(self, index: Optional[Tensor] = None
                              ) -> Tuple[Tensor, Tensor]:
        r"""Per entity of :obj:`index` and modality, the mean squared error
        :math:`\frac{1}{F_m}\|\hat{\mathbf{x}}_m - \tilde{\mathbf{x}}_m\|^2` :math:`[*, M]`,
        and whether it counts :math:`[*, M]` (every row with :obj:`missing="noise"`; the
        entities that have the modality with :obj:`"mask"`)."""
        xs, present, code = self.encode_modalities(index)
        rec = self.decode(code)
        err = torch.stack([(xs[m] - rec[m]).pow(2).mean(dim=-1) for m in self.modalities], -1)
        if self.missing == 'mask':
            counts = torch.stack([present[m] for m in self.modalities], dim=-1)
        else:
            counts = torch.ones_like(err, dtype=torch.bool)
        return err, counts

    def forward(self, index: Optional[Tensor] = None,
                rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        code = self.encode_modalities(index)[2].unsqueeze(-2)
        return code, torch.ones(code.shape[:-1], dtype=torch.bool, device=code.device)

    def extra_repr(self) -> str:
        return (f'{self.num_nodes}, {self.channels}, modalities={self.modalities}, '
                f'hidden={self.hidden}, missing={self.missing!r}')


class WeightedLoss(KGELoss):
    r"""A negative-sampling loss times a constant weight, :math:`\beta\,
    \mathcal{L}(s^+, s^-)` (TransAE's weight of the margin ranking loss).

    Args:
        loss (KGELoss): The loss.
        weight (float): :math:`\beta \geq 0`.
    """
    def __init__(self, loss: KGELoss, weight: float):
        super().__init__()
        self.loss, self.weight = loss, float(weight)

    @property
    def margin(self) -> float:
        return self.loss.margin

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return self.weight * self.loss(pos, neg)

    def extra_repr(self) -> str:
        return f'weight={self.weight}'


class TransAE(FromDataMixin, KGEModel):
    r"""The TransAE model from the `"Multimodal Data Enhanced Representation Learning for
    Knowledge Graphs" <https://doi.org/10.1109/IJCNN.2019.8852079>`_ paper (IJCNN 2019), for
    any number of modalities: a multi-modal autoencoder whose code is the entity embedding of
    TransE.

    Per modality :math:`m` (text and image in the paper) the frozen features
    :math:`\mathbf{x}_m` are encoded, the encodings fused into the code, and the code decoded
    back to every modality (:class:`AutoencoderRepresentation`),

    .. math::
        \mathbf{v}_m = \sigma(\mathbf{W}_m \mathbf{x}_m), \qquad
        \mathbf{e} = \sigma(\mathbf{W}_c [\mathbf{v}_1; \ldots; \mathbf{v}_M]), \qquad
        \tilde{\mathbf{x}}_m = \sigma(\mathbf{W}''_m\, \sigma(\mathbf{W}'_m \mathbf{e}))

    (every layer with a bias). The entity has no free embedding: the code *is* the entity
    vector, and the score is TransE's,

    .. math::
        f(h, r, t) = -\|\mathbf{e}_h + \mathbf{r} - \mathbf{e}_t\|_1 .

    The loss trains the autoencoder with the translation: :math:`\beta` times the margin
    ranking loss plus the reconstruction errors of the heads and the tails of the positive
    and of the negative triples,

    .. math::
        \mathcal{L} = \beta \cdot \frac{1}{BK} \sum \max(0, \gamma - f(h, r, t) +
        f(h', r, t')) + \sum_{g \in \{H^+, T^+, H^-, T^-\}} \sum_m
        \frac{1}{|g|\, F_m} \sum_{e \in g} \|\mathbf{x}_{m,e} - \tilde{\mathbf{x}}_{m,e}\|^2,

    each group :math:`g` counting its entities with repeats (:meth:`reconstruction_loss`;
    the batch term :obj:`"reconstruction"`), as the original code's mean-reduced
    :obj:`MSELoss` of each group and modality. Under 1-N training (not the paper's) the term
    is the reconstruction error of the batch's query entities.

    **Sources.** The paper gives the architecture and the loss; the authors' code was not
    located and the defaults follow the third-party code the card reads
    (`ksolaiman/TransAE <https://github.com/ksolaiman/TransAE>`_, :obj:`main.py` flags:
    :math:`\beta = 0.4`, :math:`\gamma = 1`, hidden widths 512 for images and 50 for text;
    it trains with RMSprop at lr 0.01, batch 128, one uniform negative per positive). Its
    code-only details are switches defaulting to it:

    * :obj:`renormalize_fusion=True`: at every training batch the rows of :math:`\mathbf{W}_c`
      are rescaled in place to unit :math:`L_2` norm before the batch is scored (in
      :meth:`score_batch` and :meth:`score_queries` of a model in training mode; never while
      evaluating);
    * :obj:`normalize_relations=True`: the relations, drawn from :math:`U(\pm 6/\sqrt{d})`,
      have unit :math:`L_1` norm at initialisation;
    * :obj:`missing="noise"`: an entity without a modality gets a fixed row of
      :math:`U(\pm 6/\sqrt{d})` noise as its feature, encoded and reconstructed like real
      data (the original code's entities without images). :obj:`missing="mask"` (this
      library's way, DESIGN §2) feeds zeros instead and leaves such rows out of the
      reconstruction error (a group's mean runs over the entities that have the modality).

    :obj:`autoencoder=False` is the TransAE of the comparison tables (NATIVE, AdaMF-MAT,
    LBMKGC): their re-implementation scores a free entity embedding and returns a zero
    reconstruction loss, i.e. it is TransE (anchors §3.7); here the features are then unused,
    the entity table is Xavier-initialised as in their code, and :obj:`normalize=True` adds
    their OpenKE :math:`L_2` normalisation of :math:`\mathbf{h}, \mathbf{r}, \mathbf{t}`.

    One-vs-all scoring encodes every entity once per evaluation pass
    (:meth:`~torch_mmkg.nn.KGEModel.prepare_scoring`) and scores the code table as a pairwise
    :math:`L_1` distance; training batches encode each distinct entity once.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The code (and relation) width :math:`d`.
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features (may be
            :obj:`None` with :obj:`autoencoder=False`).
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability. (default: all present)
        margin (float, optional): :math:`\gamma > 0`. (default: :obj:`1.0`)
        ranking_weight (float, optional): :math:`\beta \geq 0`, the weight of the ranking
            loss. (default: :obj:`0.4`)
        reconstruction_weight (float, optional): The weight of the reconstruction term,
            :math:`\geq 0` (:obj:`1` in the paper; :obj:`0` leaves the decoders untrained).
            (default: :obj:`1.0`)
        modality_channels (int or Mapping[str, int], optional): The width of each
            :math:`\mathbf{v}_m`, for all modalities or per modality. (default: :obj:`512`
            for a modality named :obj:`"image"`, :obj:`50` for any other, the original
            code's image and text widths)
        missing (str, optional): :obj:`"noise"` or :obj:`"mask"` (see above).
            (default: :obj:`"noise"`, the original code)
        renormalize_fusion (bool, optional): (see above) (default: :obj:`True`)
        normalize_relations (bool, optional): (see above) (default: :obj:`True`)
        autoencoder (bool, optional): :obj:`False`: the comparison tables' TransE-like model
            (see above). (default: :obj:`True`)
        p_norm (float, optional): The norm :math:`p \geq 1` of the score.
            (default: :obj:`1.0`)
        normalize (bool, optional): :math:`L_2`-normalise :math:`\mathbf{e}_h,
            \mathbf{r}, \mathbf{e}_t` in the score (OpenKE's :obj:`norm_flag`).
            (default: :obj:`False`)
        loss (torch.nn.Module, optional): Replaces the weighted margin ranking loss.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`code` :math:`[*, d]`; :meth:`reconstruct` per modality
          :math:`[*, F_m]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Optional[Mapping[str, Tensor]],
                 masks: Optional[Mapping[str, Tensor]] = None, margin: float = 1.0,
                 ranking_weight: float = 0.4, reconstruction_weight: float = 1.0,
                 modality_channels: Union[int, Mapping[str, int], None] = None,
                 missing: str = 'noise', renormalize_fusion: bool = True,
                 normalize_relations: bool = True, autoencoder: bool = True,
                 p_norm: float = 1.0, normalize: bool = False,
                 loss: Optional[torch.nn.Module] = None):
        num_nodes, num_relations, hidden_channels = check_sizes(self, num_nodes, num_relations,
                                                                hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        ranking_weight = real(self, 'ranking_weight', ranking_weight, 0.0)
        reconstruction_weight = real(self, 'reconstruction_weight', reconstruction_weight, 0.0)
        p_norm = real(self, 'p_norm', p_norm, 1.0, finite=False)
        choice(self, 'missing', missing, MISSING)
        for name, value in (('renormalize_fusion', renormalize_fusion),
                            ('normalize_relations', normalize_relations),
                            ('autoencoder', autoencoder), ('normalize', normalize)):
            choice(self, name, value, (True, False))
        features = dict(features or {})
        if autoencoder and not features:
            raise ValueError("TransAE needs at least one modality for its autoencoder (or "
                             "autoencoder=False, the comparison tables' TransE-like model)")
        if autoencoder:
            widths = self._modality_widths(modality_channels, list(features))
            representation = AutoencoderRepresentation(
                num_nodes, hidden_channels, features, masks, widths, missing)
        else:
            representation = EntityRepresentation(num_nodes, hidden_channels)
        if loss is None:
            loss = WeightedLoss(MarginRankingLoss(margin), ranking_weight)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         TransEInteraction(p_norm, normalize=normalize), loss,
                         representation=representation)
        self.margin, self.ranking_weight = margin, ranking_weight
        self.reconstruction_weight = reconstruction_weight
        self.missing, self.autoencoder = missing, bool(autoencoder)
        self.renormalize_fusion = bool(renormalize_fusion)
        self.normalize_relations = bool(normalize_relations)
        self.p_norm = p_norm
        self.reset_parameters()

    def _modality_widths(self, channels, modalities: List[str]) -> Dict[str, int]:
        if channels is None:
            return {m: IMAGE_HIDDEN if m == 'image' else OTHER_HIDDEN for m in modalities}
        if isinstance(channels, Mapping):
            unknown = sorted(set(channels) - set(modalities))
            lacking = [m for m in modalities if m not in channels]
            if unknown or lacking:
                raise ValueError(f"TransAE: modality_channels must give a width for each "
                                 f"modality {modalities}, got {dict(channels)}")
            return {m: positive_int(self, f'modality_channels[{m!r}]', channels[m])
                    for m in modalities}
        width = positive_int(self, 'modality_channels', channels)
        return {m: width for m in modalities}

    def reset_parameters(self):
        r"""Resets the autoencoder (PyTorch's default initialisation of its layers, as in the
        original code) or the free entity table, and the relations: :math:`U(\pm
        6/\sqrt{d})`, rows rescaled to unit :math:`L_1` norm with
        :obj:`normalize_relations`."""
        self.representation.reset_parameters()
        bound = 6.0 / math.sqrt(self.hidden_channels)
        with torch.no_grad():
            w = self.rel_emb.weight
            w.uniform_(-bound, bound)
            if self.normalize_relations:
                w.div_(w.norm(p=1, dim=1, keepdim=True))
        self.fusion.reset_parameters()

    # The autoencoder ##########################################################################

    def _autoencoder(self) -> AutoencoderRepresentation:
        if not self.autoencoder:
            raise RuntimeError("this TransAE was built with autoencoder=False (TransE-like): it "
                               "has no autoencoder")
        return self.representation

    def code(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The codes :math:`\mathbf{e}` :math:`[*, d]` of :obj:`index` (all entities if
        :obj:`None`): the entity vectors scored."""
        return self.entity(index)

    def reconstruct(self, index: Optional[Tensor] = None
                    ) -> Dict[str, Tuple[Tensor, Tensor]]:
        r"""Per modality, the autoencoder's input :math:`\hat{\mathbf{x}}_m` and its
        reconstruction :math:`\tilde{\mathbf{x}}_m`, each :math:`[*, F_m]`."""
        ae = self._autoencoder()
        xs, _, code = ae.encode_modalities(index)
        rec = ae.decode(code)
        return {m: (xs[m], rec[m]) for m in ae.modalities}

    def reconstruction_loss(self, *groups: Tensor) -> Tensor:
        r"""The sum over the entity groups (index tensors, repeats counted) and the
        modalities of the group's mean squared reconstruction error (over the entities that
        have the modality with :obj:`missing="mask"`), unweighted; each distinct entity is
        encoded and decoded once."""
        ae = self._autoencoder()
        groups = [g.reshape(-1) for g in groups if g.numel()]
        if not groups:
            return self.rel_emb.weight.new_zeros(())
        uniq, inv = torch.unique(torch.cat(groups), return_inverse=True)
        err, counts = ae.reconstruction_errors(uniq)
        total, start = err.new_zeros(()), 0
        for g in groups:
            rows = inv[start:start + g.numel()]
            start += g.numel()
            e, c = err[rows], counts[rows].to(err.dtype)
            total = total + ((e * c).sum(dim=0) / c.sum(dim=0).clamp(min=1)).sum()
        return total

    @property
    def _reconstructs(self) -> bool:
        return self.autoencoder and self.reconstruction_weight > 0

    @torch.no_grad()
    def renormalize(self):
        r"""Rescales the rows of the fusion layer :math:`\mathbf{W}_c` to unit :math:`L_2`
        norm, in place (what the original code does before every training batch)."""
        w = self._autoencoder().fusion_layer.weight
        w.div_(w.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12))

    def _before_training_batch(self):
        if self.training and self.autoencoder and self.renormalize_fusion:
            self.renormalize()

    # Training #################################################################################

    def score_batch(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    negatives) -> ScoredBatch:
        r""":meth:`~torch_mmkg.nn.KGEModel.score_batch`, after renormalising the fusion layer
        (in training mode, :obj:`renormalize_fusion`), with the term
        :obj:`"reconstruction"`: :meth:`reconstruction_loss` of the heads and the tails of
        the positives and of the negatives."""
        self._before_training_batch()
        scored = super().score_batch(head_index, rel_type, tail_index, negatives)
        if self._reconstructs:
            heads, tails = self._negative_grid(head_index, tail_index, negatives)
            scored.terms['reconstruction'] = self.reconstruction_weight * (
                self.reconstruction_loss(heads[:, 0], tails[:, 0], heads[:, 1:],
                                         tails[:, 1:]))
        return scored

    def score_queries(self, entity_index: Tensor, rel_type: Tensor) -> QueryScores:
        r""":meth:`~torch_mmkg.nn.KGEModel.score_queries`, after renormalising the fusion
        layer (in training mode, :obj:`renormalize_fusion`)."""
        self._before_training_batch()
        return super().score_queries(entity_index, rel_type)

    def query_terms(self, cache, entity_index: Tensor) -> Dict[str, Tensor]:
        r"""Under 1-N: the reconstruction error of the query entities, weighted."""
        if not self._reconstructs:
            return {}
        return {'reconstruction': self.reconstruction_weight *
                self.reconstruction_loss(entity_index)}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}'
                f'{"" if self.autoencoder else ", autoencoder=False"})')
