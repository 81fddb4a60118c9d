from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.fusion import StructureAndFused
from torch_mmkg.nn.interactions import TBKGC_TERMS, MultiViewInteraction, TransEInteraction
from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.loss import MarginRankingLoss
from torch_mmkg.nn.representation import EntityRepresentation
from torch_mmkg.nn.validation import check_sizes, real
from ._modalities import FromDataMixin, build_fusion


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
        fusion (str or Fusion, optional): The fusion of the projected modalities into
            :math:`\mathbf{e}_{mm}`: :obj:`"sum"` (the paper's) or any registered fusion (any
            case) or :class:`~torch_mmkg.nn.fusion.Fusion` module; the model scores the views
            :math:`[\mathbf{e}_s, \mathbf{e}_{mm}]`
            (:class:`~torch_mmkg.nn.fusion.StructureAndFused`) with the five-term
            :class:`~torch_mmkg.nn.interactions.MultiViewInteraction`. (default: :obj:`"sum"`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` penalty on
            the batch's structural, multi-modal and relation embeddings.
            (default: :obj:`"l2"`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        normalize (bool, optional): :math:`L_2`-normalise the arguments of every TransE term
            (:obj:`h`, :obj:`r`, :obj:`t`, the sums :math:`\mathbf{h}_s + \mathbf{h}_{mm}`
            of the last term as a whole), as OpenKE's :obj:`norm_flag` does
            (:class:`~torch_mmkg.nn.interactions.TransEInteraction`). (default: :obj:`False`)

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, M + 1, d]` and
          :math:`[*, M + 1]`; :meth:`embed` two :math:`[*, d]` tensors
    """
    legacy_keys = KGEModel.legacy_keys + (
        (r'projection\.([^.]+)\.weight', r'representation.projection.mlps.\1.0.weight'), )

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 4.0, p_norm: float = 1.0, mask_missing: bool = True,
                 regularization: Optional[str] = 'l2', regularization_weight: float = 0.0,
                 loss: Optional[torch.nn.Module] = None, fusion='sum',
                 normalize: bool = False):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin = real(self, 'margin', margin, 0.0, low_open=True)
        p_norm = real(self, 'p_norm', p_norm, 1.0, finite=False)
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one modality (use TransE "
                             f"without any)")
        representation = EntityRepresentation(num_nodes, hidden_channels, features, masks,
                                              projection_layers=1, projection_bias=False)
        inner = build_fusion(self, fusion, hidden_channels, len(representation.modalities),
                             num_relations, mask_missing)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         MultiViewInteraction(TransEInteraction(p_norm, normalize=normalize),
                                              TBKGC_TERMS),
                         loss or MarginRankingLoss(margin), regularization=regularization,
                         regularization_weight=regularization_weight,
                         representation=representation, fusion=StructureAndFused(inner))
        self.p_norm = float(p_norm)
        self.mask_missing = bool(mask_missing)
        self.reset_parameters()

    def embed(self, index: Optional[Tensor] = None,
              rel_type: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The structural and multi-modal embeddings :math:`(\mathbf{e}_s,
        \mathbf{e}_{mm})`, each :math:`[*, d]`, of :obj:`index` (all entities if
        :obj:`None`)."""
        return tuple(self.entity(index, rel_type).unbind(-2))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities})')
