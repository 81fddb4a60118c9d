from torch_mmkg.nn.interactions import DistMultInteraction
from torch_mmkg.nn.loss import SoftplusLoss
from .embedding import EmbeddingKGEModel


class DistMult(EmbeddingKGEModel):
    r"""The DistMult model from the `"Embedding Entities and Relations for Learning and
    Inference in Knowledge Bases" <https://arxiv.org/abs/1412.6575>`_ paper

    .. math::
        f(h, r, t) = \langle \mathbf{e}_h, \mathbf{r}_r, \mathbf{e}_t \rangle,

    trained with the logistic loss and an :math:`L_2` penalty by default.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        loss (torch.nn.Module, optional): (default: :class:`~torch_mmkg.nn.loss.SoftplusLoss`)
        regularization (str, optional): (default: :obj:`"l2"`)
        regularization_weight (float, optional): (default: :obj:`1e-5`)
        **kwargs: Of :class:`~torch_mmkg.nn.KGEModel`.
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int, loss=None,
                 regularization: str = 'l2', regularization_weight: float = 1e-5, **kwargs):
        super().__init__(num_nodes, num_relations, hidden_channels, DistMultInteraction(),
                         loss or SoftplusLoss(), regularization=regularization,
                         regularization_weight=regularization_weight, **kwargs)
