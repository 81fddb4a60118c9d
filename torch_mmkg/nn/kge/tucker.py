from typing import Optional

import torch

from torch_mmkg.nn.interactions import TuckERInteraction
from torch_mmkg.nn.loss import BCELoss
from torch_mmkg.nn.validation import (check_sizes, choice, optional_positive_int,
                                      probability)
from .embedding import EmbeddingKGEModel


class TuckER(EmbeddingKGEModel):
    r"""The TuckER model from the `"TuckER: Tensor Factorization for Knowledge Graph
    Completion" <https://arxiv.org/abs/1901.09590>`_ paper

    .. math::
        f(h, r, t) = \mathcal{W} \times_1 \mathbf{e}_h \times_2 \mathbf{w}_r \times_3
        \mathbf{e}_t,

    trained 1-N (every query :math:`(e, r, ?)` against all entities) with inverse relations,
    binary cross-entropy with label smoothing, batch normalisation and the paper's dropouts.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations (inverses are added).
        hidden_channels (int): The entity embedding size :math:`d_e`.
        relation_channels (int, optional): :math:`d_r`. (default: :obj:`hidden_channels`)
        input_dropout (float, optional): In :math:`[0, 1)`. (default: :obj:`0.3`)
        hidden_dropout1 (float, optional): In :math:`[0, 1)`. (default: :obj:`0.4`)
        hidden_dropout2 (float, optional): In :math:`[0, 1)`. (default: :obj:`0.5`)
        batch_norm (bool, optional): (default: :obj:`True`)
        dropout_target (str, optional): Where :obj:`hidden_dropout1` applies:
            :obj:`"matrix"` (the relation's core matrix, as TuckER's code does) or
            :obj:`"query"` (the contracted query, this library before 0.2), see
            :class:`~torch_mmkg.nn.interactions.TuckERInteraction`.
            (default: :obj:`"matrix"`)
        label_smoothing (float, optional): In :math:`[0, 1)`. (default: :obj:`0.1`)
        **kwargs: Of :class:`~torch_mmkg.nn.KGEModel`.
    """
    one_to_n = True

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 relation_channels: Optional[int] = None, input_dropout: float = 0.3,
                 hidden_dropout1: float = 0.4, hidden_dropout2: float = 0.5,
                 batch_norm: bool = True, label_smoothing: float = 0.1, loss=None,
                 inverse_relations: bool = True, dropout_target: str = 'matrix', **kwargs):
        hidden_channels = check_sizes(self, num_nodes, num_relations, hidden_channels)[2]
        relation_channels = optional_positive_int(self, 'relation_channels', relation_channels)
        input_dropout, hidden_dropout1, hidden_dropout2, label_smoothing = (
            probability(self, name, value) for name, value in (
                ('input_dropout', input_dropout), ('hidden_dropout1', hidden_dropout1),
                ('hidden_dropout2', hidden_dropout2), ('label_smoothing', label_smoothing)))
        choice(self, 'dropout_target', dropout_target, ('matrix', 'query'))
        self.relation_channels = relation_channels or hidden_channels
        interaction = TuckERInteraction(hidden_channels, self.relation_channels, input_dropout,
                                        hidden_dropout1, hidden_dropout2, batch_norm,
                                        dropout_target)
        super().__init__(num_nodes, num_relations, hidden_channels, interaction,
                         loss or BCELoss(label_smoothing), inverse_relations=inverse_relations,
                         **kwargs)

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.node_emb.weight)
        torch.nn.init.xavier_normal_(self.rel_emb.weight)
        self.interaction.reset_parameters()
