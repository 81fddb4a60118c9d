import torch

from torch_mmkg.nn.interactions import PairREInteraction
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.nn.validation import check_sizes, real
from .embedding import EmbeddingKGEModel
from .rotate import embedding_range_terms


class PairRE(EmbeddingKGEModel):
    r"""The PairRE model from the `"PairRE: Knowledge Graph Embeddings via Paired Relation
    Vectors" <https://arxiv.org/abs/2011.03798>`_ paper

    .. math::
        f(h, r, t) = \gamma - \big\| \hat{\mathbf{e}}_h \odot \mathbf{r}^H_r -
        \hat{\mathbf{e}}_t \odot \mathbf{r}^T_r \big\|_1,

    with unit-normalised entities, trained with the self-adversarial loss.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        margin (float, optional): :math:`\gamma`, finite. (default: :obj:`9.0`)
        p_norm (float, optional): :math:`p > 0` (:obj:`float("inf")` allowed).
            (default: :obj:`1.0`)
        epsilon (float, optional): Initialisation range :math:`\pm(\gamma+\epsilon)/d`,
            which must be positive. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): :math:`\geq 0`. (default: :obj:`1.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        **kwargs: Of :class:`~torch_mmkg.nn.KGEModel`.
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 margin: float = 9.0, p_norm: float = 1.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 1.0, loss=None, **kwargs):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin, self.epsilon = embedding_range_terms(self, margin, epsilon)
        p_norm = real(self, 'p_norm', p_norm, 0.0, low_open=True, finite=False)
        adversarial_temperature = real(self, 'adversarial_temperature',
                                       adversarial_temperature, 0.0)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         PairREInteraction(margin, p_norm),
                         loss or SelfAdversarialLoss(adversarial_temperature), **kwargs)

    def reset_parameters(self):
        bound = (self.interaction.margin + self.epsilon) / self.hidden_channels
        torch.nn.init.uniform_(self.node_emb.weight, -bound, bound)
        torch.nn.init.uniform_(self.rel_emb.weight, -bound, bound)
