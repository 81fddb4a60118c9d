from typing import Sequence

import torch
from torch import Tensor

from .base import Interaction, split_complex

__all__ = ['GatedSimilarityComplExInteraction']


class GatedSimilarityComplExInteraction(Interaction):
    r"""RSME's score (from the `"Is Visual Context Really Helpful for Knowledge Graph? A
    Representation Learning Perspective" <https://doi.org/10.1145/3474085.3475470>`_ paper):
    ComplEx on the entities' complex parts plus, per modality :math:`m`, the gated cosine
    similarity of their (unit-normalised) feature blocks,

    .. math::
        f(h, r, t) = \beta\, \mathrm{Re}\Big(\sum_k h_k\, r_k\, \overline{t_k}\Big) +
        \frac{1 - \beta}{M} \sum_{m=1}^{M} g_{r,m}\,
        \langle \hat{\mathbf{x}}^h_m, \hat{\mathbf{x}}^t_m \rangle,

    :math:`\langle \hat{\mathbf{x}}^h_m, \hat{\mathbf{x}}^t_m \rangle = \cos(\mathbf{x}^h_m,
    \mathbf{x}^t_m)` for unit rows (a zero row, a missing feature, gives 0). An entity is
    the real vector :math:`[\mathrm{Re}\,\mathbf{e} \,\|\, \mathrm{Im}\,\mathbf{e} \,\|\,
    \hat{\mathbf{x}}_1 \,\|\, \ldots \,\|\, \hat{\mathbf{x}}_M]` and a relation
    :math:`[\mathrm{Re}\,\mathbf{r} \,\|\, \mathrm{Im}\,\mathbf{r} \,\|\, g_{r,1}, \ldots,
    g_{r,M}]` (the forget gates). 1-vs-all scoring is one matrix product.

    With :obj:`train_similarity=False` (the authors' code), training mode
    (:meth:`torch.nn.Module.train`) scores the ComplEx term alone,
    :math:`\mathrm{Re}(\sum_k h_k r_k \overline{t_k})`, and evaluation mode the whole score.

    Args:
        complex_channels (int): The real width :math:`2d` of the complex parts.
        similarity_channels (Sequence[int]): The width of each modality's block.
        beta (float, optional): :math:`\beta \in [0, 1]`. (default: :obj:`0.5`)
        train_similarity (bool, optional): (default: :obj:`True`)
    """
    complex_entities = True

    def __init__(self, complex_channels: int, similarity_channels: Sequence[int],
                 beta: float = 0.5, train_similarity: bool = True):
        super().__init__()
        if int(complex_channels) < 2 or int(complex_channels) % 2:
            raise ValueError(f"{type(self).__name__}: complex_channels must be a positive "
                             f"even number, got {complex_channels!r}")
        if not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"{type(self).__name__}: beta must be in [0, 1], got {beta!r}")
        self.complex_channels = int(complex_channels)
        self.similarity_channels = [int(c) for c in similarity_channels]
        self.beta = float(beta)
        self.train_similarity = bool(train_similarity)

    # per instance: the widths do not follow from one embedding size
    def entity_width(self, dim=None) -> int:
        return self.complex_channels + sum(self.similarity_channels)

    def relation_width(self, dim=None) -> int:
        return self.complex_channels + len(self.similarity_channels)

    @property
    def num_modalities(self) -> int:
        return len(self.similarity_channels)

    def _weights(self):
        r"""The factors of the ComplEx and the similarity terms in the current mode."""
        if self.training and not self.train_similarity:
            return 1.0, 0.0
        M = max(self.num_modalities, 1)
        return self.beta, (1.0 - self.beta) / M

    def _split(self, e: Tensor):
        D = self.complex_channels
        return e[..., :D], e[..., D:]

    def _gate_blocks(self, sim: Tensor, gate: Tensor) -> Tensor:
        r"""Each modality's block of :obj:`sim` times its gate."""
        if not self.similarity_channels:
            return sim
        reps = torch.tensor(self.similarity_channels, device=gate.device)
        return sim * torch.repeat_interleave(gate, reps, dim=-1,
                                             output_size=sum(self.similarity_channels))

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        (hc, hs), (tc, ts) = self._split(h), self._split(t)
        rc, g = self._split(r)
        (a, b), (c, d), (e, f) = split_complex(hc), split_complex(rc), split_complex(tc)
        w_c, w_s = self._weights()
        score = w_c * ((a * c - b * d) * e + (a * d + b * c) * f).sum(dim=-1)
        if w_s:
            score = score + w_s * (self._gate_blocks(hs, g) * ts).sum(dim=-1)
        return score

    def score_tails(self, h: Tensor, r: Tensor, t_all: Tensor) -> Tensor:
        (hc, hs), (rc, g) = self._split(h), self._split(r)
        (a, b), (c, d) = split_complex(hc), split_complex(rc)
        w_c, w_s = self._weights()
        q = torch.cat([w_c * (a * c - b * d), w_c * (a * d + b * c),
                       w_s * self._gate_blocks(hs, g)], dim=-1)
        return q @ t_all.t()

    def score_heads(self, h_all: Tensor, r: Tensor, t: Tensor) -> Tensor:
        (rc, g), (tc, ts) = self._split(r), self._split(t)
        (c, d), (e, f) = split_complex(rc), split_complex(tc)
        w_c, w_s = self._weights()
        q = torch.cat([w_c * (c * e + d * f), w_c * (c * f - d * e),
                       w_s * self._gate_blocks(ts, g)], dim=-1)
        return q @ h_all.t()

    def extra_repr(self) -> str:
        return (f'complex_channels={self.complex_channels}, '
                f'similarity_channels={self.similarity_channels}, beta={self.beta}, '
                f'train_similarity={self.train_similarity}')
