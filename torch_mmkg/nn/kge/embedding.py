import torch

from torch_mmkg.nn.interactions import Interaction
from .base import KGEModel


class EmbeddingKGEModel(KGEModel):
    r"""A structural model: one learnable embedding per entity (:obj:`node_emb`, a
    one-slot :class:`~torch_mmkg.nn.EntityRepresentation`) and per relation (:obj:`rel_emb`,
    :math:`2R` rows with inverse relations), as in PyG, fed to an interaction. The widths
    come from the interaction (e.g. :math:`2d` for complex entities). Subclasses set the
    initialisation in :meth:`reset_parameters` (default: Xavier-uniform, the representation's).

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        interaction (Interaction): The score function.
        loss (torch.nn.Module): The default training loss.
        sparse (bool, optional): Sparse embedding gradients. (default: :obj:`False`)
        **kwargs: :obj:`inverse_relations`, :obj:`regularization`,
            :obj:`regularization_weight` of :class:`KGEModel`.
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 interaction: Interaction, loss: torch.nn.Module, sparse: bool = False,
                 **kwargs):
        super().__init__(num_nodes, num_relations, hidden_channels, interaction, loss,
                         sparse=sparse, **kwargs)
        self.reset_parameters()
