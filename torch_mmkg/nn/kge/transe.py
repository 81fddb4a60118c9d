import torch

from torch_mmkg.nn.interactions import TransEInteraction
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.nn.validation import check_sizes, real
from .embedding import EmbeddingKGEModel


class TransE(EmbeddingKGEModel):
    r"""The TransE model from the `"Translating Embeddings for Modeling Multi-relational
    Data" <https://proceedings.neurips.cc/paper/2013/file/
    1cecc7a77928ca8133fa24680a88d2f9-Paper.pdf>`_ paper

    .. math::
        f(h, r, t) = \gamma - \| \mathbf{e}_h + \mathbf{r}_r - \mathbf{e}_t \|_p,

    trained, as in the RotatE code base whose TransE rows the multi-modal papers report, with
    the self-adversarial loss and embeddings initialised uniformly in
    :math:`\pm(\gamma + \epsilon)/d`. Pass :obj:`loss=MarginRankingLoss(1.0)` and
    :obj:`margin=0` for the original margin-ranking setup. With :obj:`normalize=True` the
    score :math:`L_2`-normalises :math:`\mathbf{e}_h`, :math:`\mathbf{r}_r` and
    :math:`\mathbf{e}_t` first, as OpenKE's TransE (:obj:`norm_flag=True`, the code base of
    NATIVE, AdaMF-MAT, LBMKGC and VBKGC) does; the TransE paper instead renormalises the
    entity embeddings after each step, and the multi-modal papers do not say.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        margin (float, optional): :math:`\gamma`, finite. (default: :obj:`9.0`)
        p_norm (float, optional): :math:`p > 0` (:obj:`float("inf")` allowed).
            (default: :obj:`1.0`)
        epsilon (float, optional): :math:`\epsilon` of the initialisation range, which must
            be positive: :math:`\max(\gamma, 1) + \epsilon > 0`. (default: :obj:`2.0`)
        adversarial_temperature (float, optional): Of the default loss, :math:`\geq 0`.
            (default: :obj:`1.0`)
        normalize (bool, optional): Score :math:`L_2`-normalised :math:`\mathbf{e}_h`,
            :math:`\mathbf{r}_r`, :math:`\mathbf{e}_t`
            (:class:`~torch_mmkg.nn.interactions.TransEInteraction`). (default: :obj:`False`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        **kwargs: Of :class:`~torch_mmkg.nn.KGEModel`.

    Shapes:
        - **input:** head, relation and tail indices of any broadcastable shapes
        - **output:** scores of the broadcast shape
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 margin: float = 9.0, p_norm: float = 1.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 1.0, normalize: bool = False, loss=None,
                 **kwargs):
        check_sizes(self, num_nodes, num_relations, hidden_channels)
        margin = real(self, 'margin', margin)
        p_norm = real(self, 'p_norm', p_norm, 0.0, low_open=True, finite=False)
        self.epsilon = real(self, 'epsilon', epsilon, -max(margin, 1.0), low_open=True,
                            reason='so that the initialisation range (max(margin, 1) + '
                            'epsilon) / hidden_channels is positive')
        adversarial_temperature = real(self, 'adversarial_temperature',
                                       adversarial_temperature, 0.0)
        super().__init__(num_nodes, num_relations, hidden_channels,
                         TransEInteraction(p_norm, margin, normalize=normalize),
                         loss or SelfAdversarialLoss(adversarial_temperature), **kwargs)

    def reset_parameters(self):
        bound = (max(self.interaction.margin, 1.0) + self.epsilon) / self.hidden_channels
        torch.nn.init.uniform_(self.node_emb.weight, -bound, bound)
        torch.nn.init.uniform_(self.rel_emb.weight, -bound, bound)
