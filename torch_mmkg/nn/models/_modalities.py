import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_mmkg.nn.kge.rotate import embedding_range_terms
from torch_mmkg.nn.validation import check_sizes, choice, positive_int, real


def register_modalities(module: torch.nn.Module, num_nodes: int,
                        features: Mapping[str, Tensor],
                        masks: Optional[Mapping[str, Tensor]] = None,
                        reserved: Sequence[str] = ()) -> List[str]:
    r"""Validates per-modality entity features :obj:`[N, F_m]` and bool masks :obj:`[N]` and
    registers them on :obj:`module` as the (non-persistent) buffers :obj:`x_{m}` and
    :obj:`mask_{m}`; returns the modality names in order. Every error names the modality
    and what is wrong with it."""
    masks = dict(masks or {})
    names = list(features)
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise ValueError(f"masks given for modalities {unknown} without features (have "
                         f"{names})")
    for m, x in features.items():
        if not isinstance(m, str) or not m or '.' in m:
            raise ValueError(f"modality names must be non-empty strings without '.', "
                             f"got {m!r}")
        if m in reserved:
            raise ValueError(f"'{m}' is a reserved name here ({list(reserved)}); rename "
                             f"that modality")
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != num_nodes:
            raise ValueError(f"features of '{m}' must be [{num_nodes}, F], got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        if x.size(1) < 1:
            raise ValueError(f"features of '{m}' have no columns")
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(dim=1).nonzero().view(-1)
            raise ValueError(f"features of '{m}' contain NaN or Inf (rows "
                             f"{bad[:5].tolist()}{'...' if bad.numel() > 5 else ''})")
        mask = masks.get(m)
        if mask is None:
            mask = torch.ones(num_nodes, dtype=torch.bool, device=x.device)
        if (not isinstance(mask, Tensor) or mask.shape != (num_nodes, )
                or mask.dtype != torch.bool):
            raise ValueError(f"mask of '{m}' must be a [{num_nodes}] bool tensor, got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} "
                             f"{tuple(getattr(mask, 'shape', ()))}")
        module.register_buffer(f'x_{m}', x.float(), persistent=False)
        module.register_buffer(f'mask_{m}', mask.to(x.device), persistent=False)
    return names


def features_from_data(data, modalities: Optional[Sequence[str]] = None
                       ) -> Tuple[int, int, Dict[str, Tensor], Dict[str, Tensor]]:
    r""":obj:`(num_nodes, num_relations, features, masks)` of a :mod:`torch_mmkg` graph, with
    all its modalities or the subset :obj:`modalities` (in that order)."""
    from torch_mmkg.data.mmkg import ENTITY, modality_features
    feats = modality_features(data)
    if modalities is not None:
        unknown = [m for m in modalities if m not in feats]
        if unknown:
            raise ValueError(f"modalities {unknown} are not in the graph (it has "
                             f"{list(feats)})")
        feats = {m: feats[m] for m in modalities}
    return (data[ENTITY].num_nodes, data.num_relations, {m: x for m, (x, _) in feats.items()},
            {m: k for m, (_, k) in feats.items()})


class FromDataMixin:
    r"""Adds :meth:`from_data` to a model whose constructor takes
    :obj:`(num_nodes, num_relations, hidden_channels, features, masks, **kwargs)`."""
    @classmethod
    def from_data(cls, data, hidden_channels: int,
                  modalities: Optional[Sequence[str]] = None, **kwargs):
        r"""Builds the model for a :mod:`torch_mmkg` graph with all its modalities, or the
        subset :obj:`modalities` (in that order)."""
        N, R, features, masks = features_from_data(data, modalities)
        return cls(N, R, hidden_channels, features, masks, **kwargs)


def check_projected_stack_args(owner, num_nodes: int, num_relations: int,
                               hidden_channels: int, margin: float, epsilon: float,
                               adversarial_temperature: float, projection_layers: int
                               ) -> Tuple[float, float, float, int]:
    r"""Checks the arguments of a :class:`ProjectedStackMixin` model before anything is
    computed from them: the sizes, the RotatE margin and initialisation range
    (:math:`\gamma + \epsilon > 0`), the self-adversarial temperature (:math:`\geq 0`) and
    the projection depth (1 or 2); returns :obj:`(margin, epsilon, adversarial_temperature,
    projection_layers)`."""
    check_sizes(owner, num_nodes, num_relations, hidden_channels)
    margin, epsilon = embedding_range_terms(owner, margin, epsilon)
    temperature = real(owner, 'adversarial_temperature', adversarial_temperature, 0.0)
    layers = choice(owner, 'projection_layers',
                    positive_int(owner, 'projection_layers', projection_layers), (1, 2))
    return margin, epsilon, temperature, layers


class ProjectedStackMixin:
    r"""The parts NATIVE and LBMKGC share: a RotatE model over a structural embedding
    :obj:`node_emb` and projected frozen features (:obj:`projection`, one
    :class:`~torch_mmkg.nn.fusion.ModalityProjection`), whose joint entity embedding depends
    on the relation of the triple through :meth:`fuse`. Subclasses implement :meth:`fuse`,
    and for 1-vs-all scoring :meth:`prepare_scoring`, :meth:`_static_table` (one table for
    every relation, or :obj:`None`) and :meth:`_relation_table` (the table of relation
    :math:`r`)."""

    def _build_embeddings(self, num_nodes: int, num_relations: int, hidden_channels: int,
                          features: Mapping[str, Tensor], margin: float, epsilon: float,
                          projection_layers: int):
        r"""The complex structural embeddings, relation phases and projections."""
        from torch_mmkg.nn.fusion import ModalityProjection
        width = 2 * hidden_channels
        self.embedding_range = (float(margin) + float(epsilon)) / hidden_channels
        self.node_emb = torch.nn.Embedding(num_nodes, width)
        self.rel_emb = torch.nn.Embedding(num_relations, hidden_channels)
        self.projection = ModalityProjection({m: x.size(1) for m, x in features.items()},
                                             width, num_layers=projection_layers)

    def _reset_embeddings(self):
        r"""Uniform in :math:`\pm(\gamma + \epsilon)/d`, as RotatE, and fresh projections."""
        for emb in (self.node_emb, self.rel_emb):
            torch.nn.init.uniform_(emb.weight, -self.embedding_range, self.embedding_range)
        self.projection.reset_parameters()

    def modality_stack(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The representations :math:`[*, M + 1, 2d]` (structure first, then the projected
        features in :obj:`modalities` order) and their availability :math:`[*, M + 1]` of
        :obj:`index` (all entities if :obj:`None`)."""
        s = self.node_emb.weight if index is None else self.node_emb(index)
        feats, masks = {}, [torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)]
        for m in self.modalities:
            x, k = getattr(self, f'x_{m}'), getattr(self, f'mask_{m}')
            feats[m] = x if index is None else x[index]
            masks.append(k if index is None else k[index])
        proj = self.projection(feats)
        return (torch.stack([s] + [proj[m] for m in self.modalities], dim=-2),
                torch.stack(masks, dim=-1))

    def joint(self, index: Tensor, rel_type: Tensor) -> Tensor:
        r"""Joint embeddings of :obj:`index` in the context of :obj:`rel_type` (broadcast)."""
        stack, mask = self.modality_stack(index)
        return self.fuse(stack, mask, rel_type)

    def relation(self, rel_type: Tensor) -> Tensor:
        return self.rel_emb(rel_type) * (math.pi / self.embedding_range)

    def score_stacks(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
                     tail_stack: Tensor, tail_mask: Tensor) -> Tensor:
        r"""Scores of triples given the heads' and tails' representation stacks (see
        :meth:`modality_stack`), the interface :class:`~torch_mmkg.training.CoMAT` scores
        synthetic entities through."""
        return self.interaction(self.fuse(head_stack, head_mask, rel_type),
                                self.relation(rel_type),
                                self.fuse(tail_stack, tail_mask, rel_type))

    def _forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        head_index, rel_type, tail_index = torch.broadcast_tensors(head_index, rel_type,
                                                                   tail_index)
        return self.interaction(self.joint(head_index, rel_type), self.relation(rel_type),
                                self.joint(tail_index, rel_type))

    def _score_all(self, index: Tensor, rel_type: Tensor, cache: Any, tails: bool) -> Tensor:
        cache = self.prepare_scoring() if cache is None else cache
        score = self.interaction.score_tails if tails else (
            lambda q, r, E: self.interaction.score_heads(E, r, q))
        table = self._static_table(cache)
        if table is not None:  # one joint table for every relation
            return score(table[index], self.relation(rel_type), table)
        out = self.node_emb.weight.new_empty(index.numel(), self.num_nodes)
        for r in torch.unique(rel_type).tolist():  # the fusion once per relation
            rows = (rel_type == r).nonzero().view(-1)
            E_r = self._relation_table(cache, rel_type.new_tensor(r))
            out[rows] = score(E_r[index[rows]], self.relation(rel_type[rows]), E_r)
        return out

    def _score_tails(self, head_index: Tensor, rel_type: Tensor, cache: Any = None) -> Tensor:
        return self._score_all(head_index, rel_type, cache, tails=True)

    def _score_heads(self, rel_type: Tensor, tail_index: Tensor, cache: Any = None) -> Tensor:
        return self._score_all(tail_index, rel_type, cache, tails=False)
