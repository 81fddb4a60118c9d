from typing import Callable

import torch
from torch import Tensor

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

    def extra_repr(self) -> str:
        return ''


def split_complex(x: Tensor):
    r"""Splits a real tensor :math:`[*, 2d]` into real and imaginary parts :math:`[*, d]`."""
    if x.size(-1) % 2:
        raise ValueError(f"complex representations need an even width, got {x.size(-1)}")
    return x.chunk(2, dim=-1)
