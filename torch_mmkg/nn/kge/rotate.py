import math
from typing import Tuple

import torch

from torch_mmkg.nn.interactions import RotatEInteraction
from torch_mmkg.nn.loss import SelfAdversarialLoss
from torch_mmkg.nn.validation import check_sizes, real
from .embedding import EmbeddingKGEModel


def embedding_range_terms(owner, margin: float, epsilon: float) -> Tuple[float, float]:
    r"""Checks the margin :math:`\gamma` and the :math:`\epsilon` of the RotatE
    initialisation range :math:`(\gamma + \epsilon) / d` (both finite, their sum positive,
    since the relation phases are divided by the range) and returns them as floats."""
    margin = real(owner, 'margin', margin)
    epsilon = real(owner, 'epsilon', epsilon, -margin, low_open=True,
                   reason='so that the initialisation range (margin + epsilon) / '
                   'hidden_channels is positive')
    return margin, epsilon


class RotatE(EmbeddingKGEModel):
    r"""The RotatE model from the `"RotatE: Knowledge Graph Embedding by Relational Rotation
    in Complex Space" <https://arxiv.org/abs/1902.10197>`_ paper

    .. math::
        f(h, r, t) = \gamma - \sum_{k=1}^{d} \big| e_{h,k}\, e^{i\theta_{r,k}} - e_{t,k}
        \big|, \qquad \mathbf{e} \in \mathbb{C}^d,

    the paper's sum of complex moduli, trained with the self-adversarial negative-sampling
    loss (Eq. 5). As in the authors' code, embeddings are initialised uniformly in
    :math:`\pm(\gamma + \epsilon)/d` and the stored relation values :math:`\mathbf{r}` map
    to phases :math:`\boldsymbol{\theta} = \pi\, \mathbf{r}\, d / (\gamma + \epsilon)`, so
    entities and relations move at the same rate under one learning rate.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The complex embedding size :math:`d`.
        margin (float, optional): :math:`\gamma`, finite. (default: :obj:`9.0`)
        epsilon (float, optional): :math:`\epsilon`, with :math:`\gamma + \epsilon > 0`
            (the initialisation range, by which the phases are divided).
            (default: :obj:`2.0`)
        adversarial_temperature (float, optional): :math:`\alpha \geq 0` of the default
            loss. (default: :obj:`1.0`)
        loss (torch.nn.Module, optional): Replaces the default loss.
        **kwargs: Of :class:`~torch_mmkg.nn.KGEModel`.

    Shapes:
        - **input:** head, relation and tail indices of any broadcastable shapes
        - **output:** scores of the broadcast shape
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 margin: float = 9.0, epsilon: float = 2.0,
                 adversarial_temperature: float = 1.0, loss=None, **kwargs):
        hidden_channels = check_sizes(self, num_nodes, num_relations, hidden_channels)[2]
        margin, epsilon = embedding_range_terms(self, margin, epsilon)
        adversarial_temperature = real(self, 'adversarial_temperature',
                                       adversarial_temperature, 0.0)
        self.embedding_range = (margin + epsilon) / hidden_channels
        super().__init__(num_nodes, num_relations, hidden_channels, RotatEInteraction(margin),
                         loss or SelfAdversarialLoss(adversarial_temperature),
                         relation_scale=math.pi / self.embedding_range, **kwargs)

    def reset_parameters(self):
        torch.nn.init.uniform_(self.node_emb.weight, -self.embedding_range,
                               self.embedding_range)
        torch.nn.init.uniform_(self.rel_emb.weight, -self.embedding_range,
                               self.embedding_range)
