from torch_mmkg.nn.interactions import ComplExInteraction
from torch_mmkg.nn.loss import SoftplusLoss
from .embedding import EmbeddingKGEModel


class ComplEx(EmbeddingKGEModel):
    r"""The ComplEx model from the `"Complex Embeddings for Simple Link Prediction"
    <https://arxiv.org/abs/1606.06357>`_ paper

    .. math::
        f(h, r, t) = \mathrm{Re}\,\langle \mathbf{e}_h, \mathbf{r}_r,
        \overline{\mathbf{e}_t} \rangle, \qquad \mathbf{e}, \mathbf{r} \in \mathbb{C}^d,

    trained with the logistic loss and the N3 penalty by default.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d`.
        loss (torch.nn.Module, optional): (default: :class:`~torch_mmkg.nn.loss.SoftplusLoss`)
        regularization (str, optional): (default: :obj:`"n3"`)
        regularization_weight (float, optional): (default: :obj:`1e-4`)
        **kwargs: Of :class:`~torch_mmkg.nn.KGEModel`.
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int, loss=None,
                 regularization: str = 'n3', regularization_weight: float = 1e-4, **kwargs):
        super().__init__(num_nodes, num_relations, hidden_channels, ComplExInteraction(),
                         loss or SoftplusLoss(), regularization=regularization,
                         regularization_weight=regularization_weight, **kwargs)
