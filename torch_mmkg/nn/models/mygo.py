from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.loader import Negatives
from torch_mmkg.nn.kge.base import ScoringCache
from torch_mmkg.nn.loss import SoftmaxCrossEntropyLoss
from torch_mmkg.nn.regimes import ScoredBatch
from torch_mmkg.nn.validation import check_sizes, choice, positive_int, probability, real
from ._modalities import features_from_data
from ._transformer import (MaskedDecoderInteraction, TokenRepresentation, TransformerFusion,
                           TransformerKGEModel, check_transformer_args,
                           fine_grained_contrastive_loss)

__all__ = ['MyGO', 'MYGO_MODALITY_DROPOUT']

#: MyGO's :obj:`vis_dropout` and :obj:`txt_dropout` (its training script's defaults), by
#: modality (other modalities get none).
MYGO_MODALITY_DROPOUT = {'image': 0.4, 'text': 0.1}


class MyGO(TransformerKGEModel):
    r"""The MyGO model from the `"Tokenization, Fusion, and Augmentation: Towards
    Fine-grained Multi-modal Entity Representation" <https://arxiv.org/abs/2404.09468>`_
    paper (AAAI 2025): entities as sequences of discrete modality tokens, a transformer
    entity encoder, a [MASK] decoder with a TuckER head, and a fine-grained contrastive loss.

    **Tokens.** Per modality :math:`m`, each entity keeps its :math:`L_m` (:obj:`max_num`)
    most frequent token ids (:func:`~torch_mmkg.datasets.features.tokens.most_frequent_tokens`:
    visual tokens of an image tokenizer such as BEiT's, text tokens of a language model's
    tokenizer applied to the entity's description), embedded by a **frozen** table
    :math:`\mathbf{T}_m` (the tokenizer's codebook, the language model's input embeddings;
    :func:`~torch_mmkg.datasets.features.tokens.text_token_table`). The entity encoder
    (shared with :class:`~torch_mmkg.nn.models.VISTA`) is

    .. math::
        [\mathbf{o}_{\mathrm{CLS}}, \mathbf{o}_s, \mathbf{o}_{m,1}, \ldots] =
        \mathrm{Enc}_E\big([\mathrm{CLS},\ \mathrm{LN}(\mathbf{e}_s) + \mathbf{p}_s,\
        \mathrm{LN}_m(\mathbf{W}_m \mathbf{T}_m[\tau_{m,1}]) + \mathbf{p}_m,\ \ldots]\big),
        \qquad \mathbf{e} = \mathbf{o}_{\mathrm{CLS}},

    with entities lacking tokens masked. A graph without token ids can also use its dense
    features, one token per modality (:meth:`from_data` without :obj:`tokens`): a
    deviation, for when no tokenizer output is at hand.

    **Relations and decoder.** :math:`\mathbf{r} = \mathrm{LN}(\mathbf{r}_s)` (with dropout);
    :math:`[\mathbf{o}_h, \mathbf{o}_r, \mathbf{o}_t] = \mathrm{Dec}([\mathbf{h} +
    \mathbf{p}_h, \mathbf{r} + \mathbf{p}_r, \mathrm{MASK} + \mathbf{p}_t])` (the [MASK] at
    the head position for head queries) and

    .. math::
        f(h, r, t) = \big(\mathcal{W} \times_1 \mathbf{o}_{\mathrm{MASK}} \times_2
        \mathbf{o}_r\big)^\top \mathbf{t},

    a TuckER layer with its batch norms and dropouts (0.3, 0.4, 0.5) on the decoder's [MASK]
    and relation outputs, scored against the encodings of all entities
    (:class:`~torch_mmkg.nn.models._transformer.MaskedDecoderInteraction`).

    **Loss.** :math:`\mathcal{L} = \mathrm{CE}_{\epsilon}(f) + \mu\, \mathcal{L}_{fgc}`: a
    softmax cross-entropy over all entities with label smoothing :math:`\epsilon`, plus the
    fine-grained contrastive loss (:func:`~torch_mmkg.nn.models._transformer.
    fine_grained_contrastive_loss`) between this step's entity embeddings and a second
    encoding of :obj:`fgc_entities` random entities (other dropout draws),

    .. math::
        \mathcal{L}_{fgc} = \frac{1}{|V|} \sum_{v \in V} \mathrm{InfoNCE}_{\tau}
        (\mathbf{e}, \mathbf{e}'_v), \qquad V = \{\mathrm{CLS}, \text{mean of all outputs}\}
        \cup \{\text{mean of modality } m\text{'s outputs}\}_m,

    temperature :math:`\tau = 0.5` (four views for image and text). It is the extra loss term
    :obj:`"fgc"` of a batch, under 1-N (:meth:`query_terms`, the anchors being rows of the
    step's all-entity table) and negative sampling (:meth:`score_batch`, the anchors an
    extra encoding of entities of the batch).

    **Differences from the authors' code.** It encodes all entities a second time and then
    picks 512 (out of the entities and the [MASK] row); here only the picked entities are
    encoded again (the same distribution, less work), among the entities only. Its means
    run over every position, padding included, and its text view leaves the last text
    token out; here the means run over the present tokens (:obj:`mask_missing=False`: over
    every position). Its training samples are triples with one target; the library's 1-N
    regime trains on :math:`(e, r)` queries with all their answers. Training uses Adam,
    cosine warm restarts and gradient clipping at 0.1 (:obj:`TrainConfig(grad_clip=0.1)`;
    the library has no learning-rate schedule). TuckER's core is Xavier-initialised over a
    :math:`[d, d^2]` view (MoMoK's), theirs over :math:`[d, d, d]`.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        hidden_channels (int): The width :math:`d`.
        tokens (Mapping[str, Tensor], optional): Per modality, token ids :obj:`[N, L_m]`.
            (default: :obj:`None`)
        token_masks (Mapping[str, Tensor], optional): Their availability :obj:`[N, L_m]`
            (an entity with fewer tokens, or none, has False there). (default: all present)
        token_tables (Mapping[str, Tensor], optional): Per token modality, the frozen
            embedding table :obj:`[V_m, F_m]`.
        features (Mapping[str, Tensor], optional): Dense modalities, one token per vector,
            :obj:`[N, F]` or :obj:`[N, K, F]`. (default: :obj:`None`)
        masks (Mapping[str, Tensor], optional): Their availability.
        num_heads (int, optional): Must divide :math:`d`. (default: :obj:`2`, or :obj:`1` for an
            odd :math:`d`)
        feedforward_channels (int, optional): (default: :obj:`1024`)
        num_entity_layers (int, optional): (default: :obj:`1`)
        num_decoder_layers (int, optional): (default: :obj:`2`)
        dropout (float, optional): Inside the transformers. (default: :obj:`0.01`)
        structure_dropout (float, optional): After :math:`\mathrm{LN}(\mathbf{e}_s)` and
            :math:`\mathrm{LN}(\mathbf{r}_s)`. (default: :obj:`0.9`)
        modality_dropout (float or Mapping[str, float], optional): (default:
            :data:`MYGO_MODALITY_DROPOUT`, image 0.4, text 0.1)
        label_smoothing (float, optional): (default: :obj:`0.0`)
        fgc_weight (float, optional): :math:`\mu \geq 0`. (default: :obj:`1e-3`, the MKG-W
            script)
        fgc_temperature (float, optional): :math:`\tau > 0`. (default: :obj:`0.5`)
        fgc_entities (int, optional): Entities per step in :math:`\mathcal{L}_{fgc}`.
            (default: :obj:`512`)
        scorer (str, optional): :obj:`"tucker"` or :obj:`"dot"` (the [MASK] output alone,
            as VISTA). (default: :obj:`"tucker"`)
        tucker_dropout (Tuple[float, float, float], optional): (default:
            :obj:`(0.3, 0.4, 0.5)`)
        mask_missing (bool, optional): (default: :obj:`True`)
        encode_all (bool, optional): Re-encode all entities every 1-N step (the authors'
            code). (default: :obj:`True`)
        loss (torch.nn.Module, optional): Replaces the softmax cross-entropy.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast; relation ids
          :math:`r + R` are head queries)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 tokens: Optional[Mapping[str, Tensor]] = None,
                 token_masks: Optional[Mapping[str, Tensor]] = None,
                 token_tables: Optional[Mapping[str, Tensor]] = None,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None, num_heads: Optional[int] = None,
                 feedforward_channels: int = 1024, num_entity_layers: int = 1,
                 num_decoder_layers: int = 2, dropout: float = 0.01,
                 structure_dropout: float = 0.9,
                 modality_dropout: Optional[Union[float, Mapping[str, float]]] = None,
                 label_smoothing: float = 0.0, fgc_weight: float = 1e-3,
                 fgc_temperature: float = 0.5, fgc_entities: int = 512,
                 scorer: str = 'tucker',
                 tucker_dropout: Tuple[float, float, float] = (0.3, 0.4, 0.5),
                 mask_missing: bool = True, encode_all: bool = True,
                 loss: Optional[torch.nn.Module] = None):
        N, R, D = check_sizes(self, num_nodes, num_relations, hidden_channels)
        label_smoothing = probability(self, 'label_smoothing', label_smoothing)
        fgc_weight = real(self, 'fgc_weight', fgc_weight, 0.0)
        fgc_temperature = real(self, 'fgc_temperature', fgc_temperature, 0.0, low_open=True)
        fgc_entities = positive_int(self, 'fgc_entities', fgc_entities)
        choice(self, 'scorer', scorer, ('tucker', 'dot'))
        for name, value in (('mask_missing', mask_missing), ('encode_all', encode_all)):
            choice(self, name, value, (True, False))
        if modality_dropout is None:
            modality_dropout = MYGO_MODALITY_DROPOUT
        num_heads = check_transformer_args(
            self, D, num_heads, 2,
            dict(feedforward_channels=feedforward_channels, num_entity_layers=num_entity_layers,
                 num_decoder_layers=num_decoder_layers),
            dict(dropout=dropout, structure_dropout=structure_dropout), modality_dropout)
        if (not isinstance(tucker_dropout, (tuple, list)) or len(tucker_dropout) != 3
                or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                           and 0.0 <= p < 1.0 for p in tucker_dropout)):
            raise ValueError(f"MyGO: tucker_dropout must be three probabilities in [0, 1), "
                             f"got {tucker_dropout!r}")
        representation = TokenRepresentation(
            N, D, features, masks, tokens, token_masks, token_tables,
            structure_dropout=structure_dropout, modality_dropout=modality_dropout,
            mask_missing=mask_missing)
        fusion = TransformerFusion(D, num_heads, feedforward_channels, num_entity_layers,
                                   dropout, mask_missing)
        interaction = MaskedDecoderInteraction(D, num_heads, feedforward_channels,
                                               num_decoder_layers, dropout, scorer=scorer,
                                               tucker_dropout=tucker_dropout)
        super().__init__(N, R, D, representation, fusion, interaction,
                         loss or SoftmaxCrossEntropyLoss(label_smoothing),
                         relation_dropout=structure_dropout, encode_all=encode_all)
        self.label_smoothing, self.mask_missing = label_smoothing, bool(mask_missing)
        self.fgc_weight, self.fgc_temperature = fgc_weight, fgc_temperature
        self.fgc_entities = fgc_entities
        self.reset_parameters()

    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  tokens: Optional[Union[str, Mapping[str, Any]]] = None,
                  modalities: Optional[Sequence[str]] = None, **kwargs) -> 'MyGO':
        r"""Builds the model for a :mod:`torch_mmkg` graph.

        Args:
            data (HeteroData): The graph.
            hidden_channels (int): :math:`d`.
            tokens (str or Mapping, optional): The token modalities: a file written by
                :func:`~torch_mmkg.datasets.features.tokens.save_tokens`, or its content
                (per modality a dict with :obj:`"ids"`, :obj:`"mask"` and :obj:`"table"`).
                Without it, the graph's dense modalities are used, one token each (a
                deviation). (default: :obj:`None`)
            modalities (Sequence[str], optional): The modalities to use (of the tokens if
                given, else of the graph), in that order. (default: all)
            **kwargs: Of :class:`MyGO`.
        """
        from torch_mmkg.data.mmkg import ENTITY
        if tokens is None:
            N, R, features, masks = features_from_data(data, modalities)
            return cls(N, R, hidden_channels, features=features, masks=masks, **kwargs)
        from torch_mmkg.datasets.features.tokens import load_tokens
        ids, masks, tables = load_tokens(tokens)
        if modalities is not None:
            unknown = [m for m in modalities if m not in ids]
            if unknown:
                raise ValueError(f"modalities {unknown} are not in the tokens (they have "
                                 f"{list(ids)})")
            ids = {m: ids[m] for m in modalities}
        return cls(data[ENTITY].num_nodes, data.num_relations, hidden_channels, tokens=ids,
                   token_masks={m: masks[m] for m in ids},
                   token_tables={m: tables[m] for m in ids}, **kwargs)

    # The fine-grained contrastive loss ########################################################

    def fgc_loss(self, entity_index: Tensor, anchor: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathcal{L}_{fgc}` (unweighted) of the entities :obj:`entity_index`
        against their embeddings :obj:`anchor` (encoded once more if :obj:`None`): the mean
        of the InfoNCE terms with the views of a second encoding."""
        if anchor is None:
            anchor = self.fusion(*self.representation(entity_index))[0]
        stack, mask = self.representation(entity_index)
        outputs = self.fusion.encode(stack, mask)
        return fine_grained_contrastive_loss(
            anchor, outputs, mask if self.mask_missing else None,
            self.representation.token_slices, self.fgc_temperature)

    def _fgc_sample(self, pool: Tensor) -> Tensor:
        return pool[torch.randperm(pool.numel(), device=pool.device)[:self.fgc_entities]]

    def query_terms(self, cache: Optional[ScoringCache], entity_index: Tensor
                    ) -> Dict[str, Tensor]:
        if not self.fgc_weight:
            return {}
        if self.encode_all:
            pool = torch.arange(self.num_nodes, device=entity_index.device)
        else:
            pool = torch.unique(entity_index)
        sel = self._fgc_sample(pool)
        anchor = None if cache is None or cache.table is None else cache.table[sel]
        return {'fgc': self.fgc_weight * self.fgc_loss(sel, anchor)}

    def score_batch(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    negatives: Negatives) -> ScoredBatch:
        scored = super().score_batch(head_index, rel_type, tail_index, negatives)
        if self.fgc_weight:
            sel = self._fgc_sample(torch.unique(torch.cat([head_index, tail_index])))
            scored.terms['fgc'] = self.fgc_weight * self.fgc_loss(sel)
        return scored
