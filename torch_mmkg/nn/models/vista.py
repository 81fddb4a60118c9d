from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from torch_mmkg.nn.loss import SoftmaxCrossEntropyLoss
from torch_mmkg.nn.validation import check_sizes, choice, optional_positive_int, probability
from ._modalities import FromDataMixin, features_from_data
from ._transformer import (MaskedDecoderInteraction, TokenRepresentation, TransformerFusion,
                           TransformerKGEModel, check_transformer_args,
                           order_instances_by_similarity)

__all__ = ['VISTA', 'VISTA_MODALITY_DROPOUT']

#: VISTA's :obj:`vis_dropout` and :obj:`txt_dropout` of its FB15K-237 script, by modality
#: (other modalities get none).
VISTA_MODALITY_DROPOUT = {'image': 0.3, 'text': 0.0}


class VISTA(FromDataMixin, TransformerKGEModel):
    r"""The VISTA model from the `"VISTA: Visual-Textual Knowledge Graph Representation
    Learning" <https://aclanthology.org/2023.findings-emnlp.488/>`_ paper (EMNLP Findings
    2023): transformers trained from scratch on frozen modality features, for any number of
    modalities, each with one or several feature vectors (images) per entity.

    **Entity encoder.** Each entity is a token sequence: a [CLS] token, its structural
    embedding and its (projected) modality features, each with a position embedding per kind,

    .. math::
        \mathbf{e} = \mathrm{Enc}_E\big([\mathrm{CLS},\ \mathrm{LN}(\mathbf{e}_s) +
        \mathbf{p}_s,\ \mathrm{LN}(\mathbf{W}_v \mathbf{x}_v^{(1)}) + \mathbf{p}_v,\ \ldots,\
        \mathrm{LN}(\mathbf{W}_v \mathbf{x}_v^{(k)}) + \mathbf{p}_v,\
        \mathrm{LN}(\mathbf{W}_t \mathbf{x}_t) + \mathbf{p}_t]\big)_{\mathrm{CLS}},

    missing images and modalities being the encoder's key padding mask (an entity without
    any still has [CLS] and its structure); see
    :class:`~torch_mmkg.nn.models._transformer.TokenRepresentation` and
    :class:`~torch_mmkg.nn.models._transformer.TransformerFusion`.

    **Relation encoder.** :math:`\mathbf{r} = \mathrm{Enc}_R([\mathrm{CLS},\
    \mathrm{LN}(\mathbf{r}_s) + \mathbf{p}_s,\ \mathrm{LN}(\mathbf{W}_{rv}
    \mathbf{x}_{rv}) + \mathbf{p}_v,\ \mathrm{LN}(\mathbf{W}_{rt} \mathbf{x}_{rt}) +
    \mathbf{p}_t])_{\mathrm{CLS}}`; relation visual and text features exist only on VISTA's
    VTKG benchmarks: without :obj:`relation_features` (DB15K, MKG-W/Y) the relation tokens
    are absent, which is what masking them all gives. :obj:`relation_encoder=False` uses
    :math:`\mathrm{LN}(\mathbf{r}_s)` alone (as MyGO does).

    **Decoder and score.** :math:`f(h, r, t) = \mathrm{Dec}([\mathbf{h} + \mathbf{p}_h,
    \mathbf{r} + \mathbf{p}_r, \mathrm{MASK} + \mathbf{p}_t])_{\mathrm{MASK}}^\top
    \mathbf{t}`, and for head queries the [MASK] at the head position
    (:class:`~torch_mmkg.nn.models._transformer.MaskedDecoderInteraction`), scored against
    the encodings of all entities; trained 1-N with a softmax cross-entropy with optional
    label smoothing (:class:`~torch_mmkg.nn.loss.SoftmaxCrossEntropyLoss`).

    **Cost.** As in the authors' code, every 1-N training step re-encodes all :math:`N`
    entities (:obj:`encode_all=True`); :obj:`encode_all=False` re-encodes only the batch's
    query entities and takes the other candidates from a table of earlier encodings, a
    deviation (see :class:`~torch_mmkg.nn.models._transformer.TransformerKGEModel`).

    **Differences from the authors' code.** Their training samples are triples with one
    target (1-vs-all); the library's 1-N regime trains on :math:`(e, r)` queries with all
    their training answers as a normalised target distribution. Their text token is never
    masked (an entity without text attends to its zero feature): :obj:`mask_missing=False`
    attends to every stored input. Their relation tokens share the entities' visual layer
    norm and text projection; here each has its own. The authors train with Adam, cosine
    warm restarts (period 50 epochs, :math:`T_{mult} = 2`) and gradient clipping at 0.1:
    set :obj:`TrainConfig(grad_clip=0.1)`; the library has no learning-rate schedule.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        hidden_channels (int): The width :math:`d` of every token.
        features (Mapping[str, Tensor], optional): Per modality :obj:`[N, F]` or :math:`K`
            instances :obj:`[N, K, F]`. (default: :obj:`None`, structure only)
        masks (Mapping[str, Tensor], optional): Their availability :obj:`[N]` or
            :obj:`[N, K]`. (default: all present)
        relation_features (Mapping[str, Tensor], optional): Per modality, relation features
            :obj:`[R, F]` or :obj:`[R, K, F]`. (default: :obj:`None`)
        relation_masks (Mapping[str, Tensor], optional): Their availability.
        relation_encoder (bool, optional): Encode relations with :math:`\mathrm{Enc}_R`.
            (default: :obj:`True`)
        num_heads (int, optional): Attention heads of every transformer (must divide
            :math:`d`). (default: :obj:`4`, the default of the authors' :obj:`train.py`, or
            the largest divisor of :math:`d` below it; their FB15K-237 script uses 64)
        feedforward_channels (int, optional): (default: :obj:`2048`)
        num_entity_layers (int, optional): (default: :obj:`1`)
        num_relation_layers (int, optional): (default: :obj:`1`)
        num_decoder_layers (int, optional): (default: :obj:`1`)
        dropout (float, optional): Inside the transformers. (default: :obj:`0.1`)
        structure_dropout (float, optional): After :math:`\mathrm{LN}(\mathbf{e}_s)` and
            :math:`\mathrm{LN}(\mathbf{r}_s)` (:obj:`emb_dropout`). (default: :obj:`0.8`)
        modality_dropout (float or Mapping[str, float], optional): After each modality's
            layer norm. (default: :data:`VISTA_MODALITY_DROPOUT`, image 0.3, text 0.0)
        max_instances (int, optional): Keep the first :math:`k` instances of a
            multi-instance modality (:obj:`max_img_num`). (default: :obj:`None`, all)
        instance_order (str, optional): :obj:`"similarity"` sorts each entity's instances
            by their summed cosine similarity to its other instances before truncating (the
            authors' code), :obj:`"given"` keeps the given order. (default:
            :obj:`"similarity"`)
        label_smoothing (float, optional): In :math:`[0, 1)`. (default: :obj:`0.0`)
        mask_missing (bool, optional): (default: :obj:`True`)
        encode_all (bool, optional): (default: :obj:`True`)
        loss (torch.nn.Module, optional): Replaces the softmax cross-entropy.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast; relation ids
          :math:`r + R` are head queries)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Optional[Mapping[str, Tensor]] = None,
                 masks: Optional[Mapping[str, Tensor]] = None,
                 relation_features: Optional[Mapping[str, Tensor]] = None,
                 relation_masks: Optional[Mapping[str, Tensor]] = None,
                 relation_encoder: bool = True, num_heads: Optional[int] = None,
                 feedforward_channels: int = 2048, num_entity_layers: int = 1,
                 num_relation_layers: int = 1, num_decoder_layers: int = 1,
                 dropout: float = 0.1, structure_dropout: float = 0.8,
                 modality_dropout: Optional[Union[float, Mapping[str, float]]] = None,
                 max_instances: Optional[int] = None, instance_order: str = 'similarity',
                 label_smoothing: float = 0.0, mask_missing: bool = True,
                 encode_all: bool = True, loss: Optional[torch.nn.Module] = None):
        N, R, D = check_sizes(self, num_nodes, num_relations, hidden_channels)
        max_instances = optional_positive_int(self, 'max_instances', max_instances)
        choice(self, 'instance_order', instance_order, ('similarity', 'given'))
        for name, value in (('relation_encoder', relation_encoder),
                            ('mask_missing', mask_missing), ('encode_all', encode_all)):
            choice(self, name, value, (True, False))
        label_smoothing = probability(self, 'label_smoothing', label_smoothing)
        if relation_features and not relation_encoder:
            raise ValueError("VISTA: relation_features need relation_encoder=True")
        if modality_dropout is None:
            modality_dropout = VISTA_MODALITY_DROPOUT
        num_heads = check_transformer_args(
            self, D, num_heads, 4,
            dict(feedforward_channels=feedforward_channels, num_entity_layers=num_entity_layers,
                 num_relation_layers=num_relation_layers,
                 num_decoder_layers=num_decoder_layers),
            dict(dropout=dropout, structure_dropout=structure_dropout), modality_dropout)
        features = self._instances(dict(features or {}), dict(masks or {}), max_instances,
                                   instance_order)
        representation = TokenRepresentation(
            N, D, features[0], features[1], structure_dropout=structure_dropout,
            modality_dropout=modality_dropout, mask_missing=mask_missing)
        fusion = TransformerFusion(D, num_heads, feedforward_channels, num_entity_layers,
                                   dropout, mask_missing)
        interaction = MaskedDecoderInteraction(D, num_heads, feedforward_channels,
                                               num_decoder_layers, dropout, scorer='dot')
        rel_repr = rel_fusion = None
        if relation_encoder:
            rel = self._instances(dict(relation_features or {}), dict(relation_masks or {}),
                                  max_instances, instance_order)
            rel_repr = TokenRepresentation(
                R, D, rel[0], rel[1], structure_dropout=structure_dropout,
                modality_dropout=modality_dropout, mask_missing=mask_missing)
            rel_fusion = TransformerFusion(D, num_heads, feedforward_channels,
                                           num_relation_layers, dropout, mask_missing)
        super().__init__(N, R, D, representation, fusion, interaction,
                         loss or SoftmaxCrossEntropyLoss(label_smoothing),
                         relation_representation=rel_repr, relation_fusion=rel_fusion,
                         relation_dropout=structure_dropout, encode_all=encode_all)
        self.label_smoothing, self.mask_missing = label_smoothing, bool(mask_missing)
        self.reset_parameters()

    @staticmethod
    def _instances(features, masks, max_instances, order):
        r"""Multi-instance features sorted (:obj:`order`) and truncated to
        :obj:`max_instances`."""
        for m, x in list(features.items()):
            if not isinstance(x, Tensor) or x.dim() != 3:
                continue
            k = masks.get(m)
            k = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if k is None else k
            if order == 'similarity' and isinstance(k, Tensor) and k.shape == x.shape[:2]:
                x, k = order_instances_by_similarity(x.float(), k)
            if max_instances is not None:
                x, k = x[:, :max_instances], k[:, :max_instances]
            features[m], masks[m] = x, k
        return features, masks

    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None,
                  instances: Optional[Mapping[str, str]] = None, **kwargs) -> 'VISTA':
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities (or the
        subset :obj:`modalities`, in that order) and, for each :obj:`modality: node type` of
        :obj:`instances`, the several instances per entity of that node type (e.g.
        :obj:`{"image": "image"}`, see :func:`~torch_mmkg.nn.models.ikrl.dense_instances`),
        which replace a pooled modality of the same name."""
        from .ikrl import dense_instances
        N, R, features, masks = features_from_data(data, modalities)
        for m, node_type in (instances or {}).items():
            features[m], masks[m] = dense_instances(data, node_type)
        return cls(N, R, hidden_channels, features, masks, **kwargs)
