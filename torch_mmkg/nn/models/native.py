import math
from typing import Mapping, Optional

import torch
from torch import Tensor

from torch_mmkg.nn.kge.base import KGEModel
from torch_mmkg.nn.validation import choice
from ._modalities import (FromDataMixin, check_projected_stack_args, projected_rotate,
                          uniform_init)

#: The initialisations of :class:`NATIVE`.
INITS = ('authors', 'rotate')
#: The :math:`L_2` penalties of :class:`NATIVE`.
REGULARIZATION_STYLES = ('authors', 'positives')
#: NATIVE's names of its concatenation ablations: the fusion and its options.
CONCAT_ABLATIONS = {'concat': {'projection': False}, 'concat_linear': {'projection': True}}


class NATIVE(FromDataMixin, KGEModel):
    r"""The ReDAF model of NATIVE from the `"NATIVE: Multi-modal Knowledge Graph Completion
    in the Wild" <https://arxiv.org/abs/2406.17605>`_ paper (relation-guided dual adaptive
    fusion; the CoMAT adversarial training regime wraps it separately).

    Each entity has a learnable structural embedding :math:`\mathbf{e}_S \in \mathbb{C}^d` and,
    per modality :math:`m`, frozen features :math:`\mathbf{x}_m` projected by a two-layer MLP
    :math:`\mathbf{e}_m = P_m(\mathbf{x}_m)`. In the context of relation :math:`r` the joint
    embedding is (Eqs. 2–3)

    .. math::
        \mathbf{e}^{\mathrm{joint}}_r = \sum_{m \in M \cup \{S\}} \omega_m(e, r)\,
        \mathbf{e}_m, \qquad \omega_m(e, r) = \mathrm{softmax}_m\big(\mathbf{v}^{\top}
        \tanh(\mathbf{e}_m) / \sigma(\zeta_r)\big),

    the same :math:`r` for head and tail, scored by RotatE, :math:`\gamma - \sum_k
    |h_k e^{i\theta_{r,k}} - t_k|`, and trained with the self-adversarial loss plus an
    :math:`L_2` penalty on the raw embeddings.

    Where the paper is silent the defaults follow the authors' code
    (:obj:`init="authors"`, :obj:`regularization_style="authors"`): the structural
    embeddings are drawn from :math:`U(\pm\rho_e)`, :math:`\rho_e = (\gamma + \epsilon) /
    (2d)`, the relation phases :math:`\boldsymbol{\theta}_r = \pi\mathbf{r} / \rho_r` from
    :math:`\mathbf{r} \sim U(\pm\rho_r)`, :math:`\rho_r = (\gamma + \epsilon) / d`,
    :math:`\mathbf{v}` as the default :obj:`nn.Linear(2d, 1, bias=False)`,
    :math:`U(\pm 1/\sqrt{2d})`, and :math:`\zeta_r \sim U(\pm\rho_e)`; the penalty is
    :math:`\lambda\,(\overline{h^2} + \overline{t^2} + \overline{r^2}) / 3` over the raw
    structural and relation embeddings of the positives *and* the negatives.

    Missing modalities (mask False) are left out of the softmax, so an entity is never scored
    through a feature it does not have; :obj:`mask_missing=False` restores the paper's
    behaviour (here and in :class:`~torch_mmkg.training.CoMAT`). For evaluation the
    projections are computed once per pass and the fusion once per relation of the batch, not
    per query.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d` (entities have real
            width :math:`2d`).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): :math:`\gamma`, finite. (default: :obj:`4.0`)
        epsilon (float, optional): :math:`\epsilon` of the initialisation ranges, with
            :math:`\gamma + \epsilon > 0`. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): :math:`\geq 0`. (default: :obj:`2.0`)
        regularization_weight (float, optional): :math:`L_2` weight :math:`\lambda \geq 0`
            (the authors use :obj:`1e-5`, and :obj:`0` on DB15K). (default: :obj:`1e-5`)
        mask_missing (bool, optional): (default: :obj:`True`)
        relation_temperature (bool, optional): Use :math:`\zeta_r` (ablation "w/o
            :math:`\zeta_r`" when False). (default: :obj:`True`)
        fusion (str or Fusion, optional): :obj:`"adaptive"` (ReDAF), the paper's ablations
            :obj:`"mean"` ("w/o :math:`\omega_m`": uniform weights over the available
            representations), :obj:`"concat"` ("w/ concat" as the authors ran it: the raw
            concatenation of the :math:`M + 1` slots, a complex entity of size
            :math:`(M + 1) d` scored with relations of as many phases, :math:`\rho_r =
            (\gamma + \epsilon) / ((M + 1) d)`) and :obj:`"product"`;
            :obj:`"concat_linear"`, the concatenation mapped back to :math:`2d` by a linear
            layer (torch_mmkg's earlier "concat"); or any other registered fusion
            (:data:`~torch_mmkg.nn.fusion.FUSIONS`, any case) or
            :class:`~torch_mmkg.nn.fusion.Fusion` module (relations get half its output
            width in phases). (default: :obj:`"adaptive"`)
        projection_layers (int, optional): :obj:`2` for the MLP :math:`P_m`, :obj:`1` for
            a single linear map (ablation "w/o :math:`P_m`"). (default: :obj:`2`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        init (str, optional): :obj:`"authors"` (the authors' code, above) or
            :obj:`"rotate"` (torch_mmkg's earlier initialisation: structural embeddings and
            relations in :math:`\pm(\gamma + \epsilon) / d` as in RotatE's code,
            :math:`\mathbf{v} \sim \mathcal{N}(0, 1/(2d))`, :math:`\zeta_r = 0`); the paper
            states none. (default: :obj:`"authors"`)
        regularization_style (str, optional): :obj:`"authors"` (the authors' code, above)
            or :obj:`"positives"` (torch_mmkg's earlier :math:`\lambda\,(\overline{h^2} +
            \overline{t^2} + \overline{r^2})` over the positives only); the paper states
            none. (default: :obj:`"authors"`)
        trainable_features (bool, optional): Fine-tune the feature tables, initialised from
            the features (the authors' DB15K code makes its text table trainable; AdaMF's
            code all of them); else frozen buffers. (default: :obj:`False`)

    The ablation switches of the paper's Table 4 that concern training (w/o CoMAT, w/o the
    gradient penalty, vanilla GAN loss, MLP discriminator) are options of
    :class:`~torch_mmkg.training.CoMAT`.

    Shapes:
        - **input:** head, relation and tail indices :math:`[*]` (broadcast)
        - **output:** scores :math:`[*]`; :meth:`score_tails` / :meth:`score_heads`
          :math:`[B, N]`; :meth:`modality_stack` :math:`[*, M + 1, 2d]` and
          :math:`[*, M + 1]`
    """
    legacy_keys = KGEModel.legacy_keys + ((r'projection\.', 'representation.projection.'), )

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 features: Mapping[str, Tensor], masks: Optional[Mapping[str, Tensor]] = None,
                 margin: float = 4.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 2.0, regularization_weight: float = 1e-5,
                 mask_missing: bool = True, relation_temperature: bool = True,
                 fusion='adaptive', projection_layers: int = 2, loss=None,
                 init: str = 'authors', regularization_style: str = 'authors',
                 trainable_features: bool = False):
        margin, epsilon, adversarial_temperature, projection_layers = (
            check_projected_stack_args(self, num_nodes, num_relations, hidden_channels,
                                       margin, epsilon, adversarial_temperature,
                                       projection_layers))
        choice(self, 'init', init, INITS)
        choice(self, 'regularization_style', regularization_style, REGULARIZATION_STYLES)
        choice(self, 'trainable_features', trainable_features, (True, False))
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one modality (use RotatE "
                             f"without any)")
        rho = margin + epsilon
        fusion_kwargs = dict(relation_temperature=relation_temperature)
        if isinstance(fusion, str) and fusion.lower() in CONCAT_ABLATIONS:
            fusion_kwargs.update(CONCAT_ABLATIONS[fusion.lower()])
            fusion = 'concat'
        self.entity_range = rho / hidden_channels
        if init == 'authors':
            self.entity_range = rho / (2 * hidden_channels)
            fusion_kwargs.update(attention_init='linear', temperature_init=self.entity_range)
        parts = projected_rotate(
            self, num_nodes, num_relations, hidden_channels, features, masks, margin, epsilon,
            adversarial_temperature, regularization_weight, projection_layers, fusion,
            mask_missing, loss, entity_range=self.entity_range,
            trainable_features=trainable_features, **fusion_kwargs)
        width = parts['fusion'].output_width(2 * hidden_channels)
        if width % 2:
            raise ValueError(f"NATIVE scores complex entities: the fusion's output width must "
                             f"be even, got {width}")
        relation_width = width // 2
        # the phases are pi r / rho_r with rho_r = (gamma + epsilon) / (relation width)
        self.relation_range = self.embedding_range = rho / relation_width
        parts.update(relation_scale=math.pi / self.relation_range,
                     regularize='raw_batch' if regularization_style == 'authors' else 'raw')
        own_relations = relation_width != hidden_channels
        super().__init__(num_nodes, num_relations, hidden_channels,
                         relation_embedding=not own_relations, **parts)
        if own_relations:
            self.rel_emb = torch.nn.Embedding(num_relations, relation_width)
        self.mask_missing = bool(mask_missing)
        self.init, self.regularization_style = init, regularization_style
        self.trainable_features = bool(trainable_features)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module: the structural table
        (:math:`U(\pm\rho_e)`), the relations (:math:`U(\pm\rho_r)`), the projections, the
        fusion, in this order."""
        self.representation.reset_structure()
        uniform_init(self.relation_range)(self.rel_emb.weight)
        self.representation.reset_encoders()
        self.fusion.reset_parameters()
        if hasattr(self.interaction, 'reset_parameters'):
            self.interaction.reset_parameters()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}, '
                f'fusion={type(self.fusion).__name__})')
