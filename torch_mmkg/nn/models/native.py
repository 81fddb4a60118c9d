from typing import Mapping, Optional

from torch import Tensor

from torch_mmkg.nn.kge.base import KGEModel
from ._modalities import FromDataMixin, check_projected_stack_args, projected_rotate


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

    Missing modalities (mask False) are left out of the softmax, so an entity is never scored
    through a feature it does not have; :obj:`mask_missing=False` restores the paper's
    behaviour. For evaluation the projections are computed once per pass and the fusion once
    per relation of the batch, not per query.

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d` (entities have real
            width :math:`2d`).
        features (Mapping[str, Tensor]): Per modality, the :obj:`[N, F_m]` features.
        masks (Mapping[str, Tensor], optional): Per modality, the :obj:`[N]` bool
            availability (default: all present).
        margin (float, optional): :math:`\gamma`, finite. (default: :obj:`4.0`)
        epsilon (float, optional): Initialisation range :math:`\pm(\gamma+\epsilon)/d`,
            which must be positive. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): :math:`\geq 0`. (default: :obj:`2.0`)
        regularization_weight (float, optional): :math:`L_2` weight, :math:`\geq 0`.
            (default: :obj:`1e-5`)
        mask_missing (bool, optional): (default: :obj:`True`)
        relation_temperature (bool, optional): Use :math:`\zeta_r` (ablation "w/o
            :math:`\zeta_r`" when False). (default: :obj:`True`)
        fusion (str or Fusion, optional): :obj:`"adaptive"` (ReDAF), the paper's ablations
            :obj:`"mean"` ("w/o :math:`\omega_m`": uniform weights over the available
            representations), :obj:`"concat"` and :obj:`"product"`, or any other registered
            fusion (:data:`~torch_mmkg.nn.fusion.FUSIONS`, any case) or
            :class:`~torch_mmkg.nn.fusion.Fusion` module. (default: :obj:`"adaptive"`)
        projection_layers (int, optional): :obj:`2` for the MLP :math:`P_m`, :obj:`1` for
            a single linear map (ablation "w/o :math:`P_m`"). (default: :obj:`2`)
        loss (torch.nn.Module, optional): Replaces the default loss.

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
                 fusion='adaptive', projection_layers: int = 2, loss=None):
        margin, epsilon, adversarial_temperature, projection_layers = (
            check_projected_stack_args(self, num_nodes, num_relations, hidden_channels,
                                       margin, epsilon, adversarial_temperature,
                                       projection_layers))
        if not features:
            raise ValueError("NATIVE needs at least one modality (use RotatE without any)")
        super().__init__(num_nodes, num_relations, hidden_channels, **projected_rotate(
            self, num_nodes, num_relations, hidden_channels, features, masks, margin, epsilon,
            adversarial_temperature, regularization_weight, projection_layers, fusion,
            mask_missing, loss, relation_temperature=relation_temperature))
        self.reset_parameters()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, modalities={self.modalities}, '
                f'fusion={type(self.fusion).__name__})')
