from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Embedding

from torch_mmkg.loader import Negatives
from torch_mmkg.nn.interactions import Interaction
from .base import KGEModel


class EmbeddingKGEModel(KGEModel):
    r"""A structural model: one learnable embedding per entity (:obj:`node_emb`) and per
    relation (:obj:`rel_emb`, :math:`2R` rows with inverse relations), as in PyG, fed to an
    interaction. The widths come from the interaction (e.g. :math:`2d` for complex
    entities). Subclasses set the initialisation in :meth:`reset_parameters`.

    Args:
        num_nodes (int): The number of entities.
        num_relations (int): The number of relations.
        hidden_channels (int): The embedding size :math:`d`.
        interaction (Interaction): The score function.
        loss (torch.nn.Module): The training loss.
        sparse (bool, optional): Sparse embedding gradients. (default: :obj:`False`)
        **kwargs: :obj:`inverse_relations`, :obj:`regularization`,
            :obj:`regularization_weight` of :class:`KGEModel`.
    """
    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 interaction: Interaction, loss: torch.nn.Module, sparse: bool = False,
                 **kwargs):
        super().__init__(num_nodes, num_relations, hidden_channels, interaction, loss,
                         **kwargs)
        self.node_emb = Embedding(num_nodes, interaction.entity_width(hidden_channels),
                                  sparse=sparse)
        self.rel_emb = Embedding(self.num_relation_embeddings,
                                 interaction.relation_width(hidden_channels), sparse=sparse)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.node_emb.weight)
        torch.nn.init.xavier_uniform_(self.rel_emb.weight)
        if hasattr(self.interaction, 'reset_parameters'):
            self.interaction.reset_parameters()

    def entity(self, index: Optional[Tensor] = None) -> Tensor:
        return self.node_emb.weight if index is None else self.node_emb(index)

    def relation(self, rel_type: Tensor) -> Tensor:
        return self.rel_emb(rel_type)

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        # Interactions with a fused gather-and-score kernel (``score_candidates``) score all
        # B x K candidates in one call, read straight from the embedding table: no [B, K, D]
        # copy in the forward pass and one scatter into the table's gradient. The penalty needs
        # the gathered candidates, so with a penalty the generic path is kept.
        fused = getattr(self.interaction, 'score_candidates', None)
        if fused is None or (self.regularization and self.regularization_weight):
            return super().score_negatives(head_index, rel_type, tail_index, negatives)
        h, r, t = self.entity(head_index), self.relation(rel_type), self.entity(tail_index)
        ch = negatives.corrupt_head
        anchor = torch.where(ch[:, None], t, h)
        if self.inverse_relations:  # head corruptions as tails of the inverse relation
            r = torch.where(ch[:, None], self.relation(rel_type + self.num_relations), r)
            pos = self.interaction(anchor, r, torch.where(ch[:, None], h, t))
            ch = torch.zeros_like(ch)
        else:
            pos = self.interaction(h, r, t)
        neg = fused(anchor, r, self.node_emb.weight, negatives.index, ch)
        self._reg_inputs = (h, r, t)
        return pos, neg
