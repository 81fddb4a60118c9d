from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_mmkg.ops import compiled_forward

_CHUNK_ELEMENTS = 2**24


class Interaction(torch.nn.Module):
    r"""An abstract base class for score functions :math:`f(\mathbf{h}, \mathbf{r},
    \mathbf{t})` of knowledge graph embeddings (the *interaction* of PyKEEN's model =
    representations + interaction).

    Representations are real tensors whose last dimension holds the features (complex
    vectors store the real parts in the first half and the imaginary parts in the second).
    :meth:`forward` is broadcastable: :obj:`h` of shape :obj:`[B, 1, D]` against :obj:`t` of
    shape :obj:`[B, K, D]` scores :math:`K` candidate tails per query in one call.
    :meth:`score_tails` and :meth:`score_heads` score a batch of queries against *all*
    entities as a :obj:`[B, N]` matrix, as a matrix product or a fused pairwise distance,
    never a Python loop over candidates. Subclasses override them where the formula allows;
    the default falls back to :meth:`forward` on entity chunks of bounded size.

    Higher scores mean more plausible triples.
    """
    #: Width of an entity representation for embedding size :obj:`dim`.
    entity_width: Callable[[int], int] = staticmethod(lambda dim: dim)
    #: Width of a relation representation for embedding size :obj:`dim`.
    relation_width: Callable[[int], int] = staticmethod(lambda dim: dim)
    #: Whether entity representations are complex (real parts, then imaginary parts).
    complex_entities: bool = False
    #: Whether the interaction takes the entities' slot masks (:obj:`h_mask`,
    #: :obj:`t_mask`), judging views by them (an ensemble).
    uses_masks: bool = False

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        r"""Scores triples, broadcasting all leading dimensions.

        Shapes:
            - **input:** :obj:`h` :math:`[*, D_e]`, :obj:`r` :math:`[*, D_r]`,
              :obj:`t` :math:`[*, D_e]`
            - **output:** :math:`[*]` (the broadcast leading shape)
        """
        raise NotImplementedError

    def _chunked(self, B: int, N: int, width: int, fn: Callable[[int, int], Tensor],
                 like: Tensor) -> Tensor:
        out = like.new_empty(B, N)
        step = max(1, _CHUNK_ELEMENTS // max(B * width, 1))
        for n0 in range(0, N, step):
            out[:, n0:n0 + step] = fn(n0, min(N, n0 + step))
        return out

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        r"""Scores :math:`(h_b, r_b, e)` for every entity :math:`e`.

        Shapes:
            - **input:** :obj:`h` :math:`[B, D_e]`, :obj:`r` :math:`[B, D_r]`,
              :obj:`t_all` :math:`[N, D_e]`
            - **output:** :math:`[B, N]`
        """
        return self._chunked(h.size(0), t_all.size(0), h.size(-1), lambda a, b: self(
            h[:, None], r[:, None], t_all[None, a:b]), h)

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        r"""Scores :math:`(e, r_b, t_b)` for every entity :math:`e`.

        Shapes:
            - **input:** :obj:`h_all` :math:`[N, D_e]`, :obj:`r` :math:`[B, D_r]`,
              :obj:`t` :math:`[B, D_e]`
            - **output:** :math:`[B, N]`
        """
        return self._chunked(t.size(0), h_all.size(0), t.size(-1), lambda a, b: self(
            h_all[None, a:b], r[:, None], t[:, None]), t)

    def prepare_candidates(self, table: Tensor, mask: Optional[Tensor] = None) -> Any:
        r"""The candidate side of :meth:`score_tails` for the all-entity :obj:`table`, once
        per evaluation pass (the table itself by default; an ensemble adds its joint
        view)."""
        return table

    def view_logits(self, h: Tensor, r: Tensor, t_all: Any, **masks
                    ) -> List[Tuple[Optional[Tensor], Tensor, Optional[Tensor]]]:
        r"""The 1-N training logits per scorer, :obj:`(rows, logits [B, N], candidate
        weights)`: one scorer judging every query and candidate by default."""
        return [(None, self.score_tails(h, r, t_all), None)]

    def score_gathered(self, anchor: Tensor, r: Tensor, candidates: Tensor,
                       corrupt_head: Union[bool, Tensor] = False) -> Tensor:
        r"""Scores of :math:`(a_b, r_b, c_{bk})` for the gathered candidate tails
        :math:`c_{bk}` (of :math:`(c_{bk}, r_b, a_b)` for candidate heads where
        :obj:`corrupt_head`, a bool or a :obj:`[B]` bool tensor).

        Shapes:
            - **input:** :obj:`anchor` :math:`[B, *E]`, :obj:`r` :math:`[B, D_r]`,
              :obj:`candidates` :math:`[B, K, *E]` (:math:`E` the entity shape, e.g.
              :math:`[D]`, or :math:`[V, D]` for multi-view interactions)
            - **output:** :math:`[B, K]`
        """
        a = anchor.unsqueeze(1)
        score = compiled_forward(self, candidates, candidates.numel())
        if isinstance(corrupt_head, Tensor):
            flag = corrupt_head.view(-1, *([1] * (candidates.dim() - 1)))
            return score(torch.where(flag, candidates, a), r[:, None],
                         torch.where(flag, a, candidates))
        if corrupt_head:
            return score(candidates, r[:, None], a)
        return score(a, r[:, None], candidates)

    def score_candidates(self, anchor: Tensor, r: Tensor, table: Tensor, index: Tensor,
                         corrupt_head: Union[bool, Tensor] = False) -> Tensor:
        r"""Like :meth:`score_gathered` for the candidates :obj:`index` :math:`[B, K]` of
        the entity :obj:`table` :math:`[n, *E]`. Interactions with a fused
        gather-and-score kernel override it (no :math:`[B, K, *E]` copy)."""
        return self.score_gathered(anchor, r, gather(table, index), corrupt_head)

    def score_weighted_candidates(self, anchor: Tensor, r: Tensor, basis: Tensor,
                                  weights: Tensor, index: Tensor,
                                  corrupt_head: Union[bool, Tensor] = False) -> Tensor:
        r"""Like :meth:`score_candidates`, each candidate being the weighted sum
        :math:`\sum_p w_{bkp}\, \mathbf{B}_{e, p}` of its basis rows (a relation-dependent
        fusion split by :meth:`~torch_mmkg.nn.fusion.Fusion.decompose`).

        Shapes:
            - **input:** :obj:`basis` :math:`[n, P, D]`, :obj:`weights` :math:`[B, K, P]`,
              :obj:`index` :math:`[B, K]`
            - **output:** :math:`[B, K]`
        """
        cand = (weights[..., None] * gather(basis, index)).sum(dim=-2)
        return self.score_gathered(anchor, r, cand, corrupt_head)

    def extra_repr(self) -> str:
        return ''


def gather(table: Tensor, index: Tensor) -> Tensor:
    r"""Rows :obj:`table[index]`, by an embedding lookup for a 2-D table and
    :func:`torch.index_select` otherwise (both with a deterministic backward, faster than
    advanced indexing's accumulating :obj:`index_put_`)."""
    if table.dim() == 2:  # an embedding lookup: its backward writes one dense gradient
        return torch.nn.functional.embedding(index, table)
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])


def split_complex(x: Tensor):
    r"""Splits a real tensor :math:`[*, 2d]` into real and imaginary parts :math:`[*, d]`."""
    if x.size(-1) % 2:
        raise ValueError(f"complex representations need an even width, got {x.size(-1)}")
    return x.chunk(2, dim=-1)
