import contextlib
import hashlib
import re
import warnings
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.kge import KGEModel as PyGKGEModel

from torch_mmkg.data.feature_store import is_disk_features
from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.loader import (Negatives, NegativeSampler, OneToNLoader, TripleLoader,
                               relation_head_probability)
from torch_mmkg.nn.fusion import Fusion, SingleSlot
from torch_mmkg.nn.interactions import Interaction
from torch_mmkg.nn.interactions.base import gather
from torch_mmkg.nn.loss import l2_regularization, n3_regularization
from torch_mmkg.nn.regimes import QueryScores, ScoredBatch
from torch_mmkg.nn.representation import EntityRepresentation
from torch_mmkg.nn.validation import IndexSpec, check_indices, check_sizes, choice, real


class FeatureMismatchWarning(UserWarning):
    r"""A state dict is loaded into a model built on other feature values than the model it
    was saved from."""


def _digest(t: Tensor) -> str:
    t = t.detach().contiguous().cpu()
    h = hashlib.sha256(f'{t.dtype}|{tuple(t.shape)}|'.encode('utf-8'))
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def feature_mismatch(saved: Dict[str, str], now: Dict[str, str]) -> str:
    r"""A description of how two :meth:`KGEModel.feature_fingerprint` differ (empty if they
    do not)."""
    parts = []
    for name in sorted(set(saved) | set(now)):
        if name not in now:
            parts.append(f"{name} saved but absent now")
        elif name not in saved:
            parts.append(f"{name} absent from the saved state")
        elif saved[name] != now[name]:
            parts.append(f"{name} differs: sha256 {saved[name]} saved, {now[name]} now")
    return '; '.join(parts)


def _take_state(state: Any, index: Tensor) -> Any:
    r"""Rows :obj:`index` of every tensor in a fusion state (a tensor, tuple or None)."""
    if isinstance(state, Tensor):
        return state[index]
    if isinstance(state, (tuple, list)):
        return type(state)(_take_state(x, index) for x in state)
    return state


class ScoringCache(NamedTuple):
    r"""What 1-vs-all scoring needs for all entities, computed once per evaluation pass by
    :meth:`KGEModel.prepare_scoring`: the joint table of a relation-free fusion
    (:obj:`table`), the basis and state of a decomposable relation-dependent one, or the
    stack and mask (any other relation-dependent fusion)."""
    table: Optional[Tensor] = None
    basis: Optional[Tensor] = None
    state: Any = None
    stack: Optional[Tensor] = None
    mask: Optional[Tensor] = None
    #: The candidate side of the interaction (:meth:`Interaction.prepare_candidates` of the
    #: table), and what the representation computed on the way.
    candidates: Any = None
    extras: Optional[Dict[str, Tensor]] = None


class KGEModel(PyGKGEModel):
    r"""The base class of all :mod:`torch_mmkg` models, and their one scoring pipeline: a
    composition

    .. math::
        f(h, r, t) = \mathrm{interaction}\big(\mathrm{fusion}(\mathrm{representation}(h),
        r),\ \mathrm{relation}(r),\ \mathrm{fusion}(\mathrm{representation}(t), r)\big)

    of an :class:`~torch_mmkg.nn.EntityRepresentation` (a stack :math:`[*, S, D]` of an
    entity's structural embedding and encoded modalities, with its mask), a
    :class:`~torch_mmkg.nn.fusion.Fusion` (the joint representation, or views for a
    multi-view interaction, possibly in the context of the relation), a relation embedding
    and an :class:`~torch_mmkg.nn.interactions.Interaction`. Methods are presets of it
    (a constructor choosing parts and defaults): structural models have one slot and
    :class:`~torch_mmkg.nn.fusion.SingleSlot`.

    It is a :class:`torch_geometric.nn.kge.KGEModel` and keeps PyG's surface
    (:meth:`forward`, :meth:`loss`, :meth:`loader`, :meth:`random_sample`, :meth:`test`),
    plus what PyG lacks:

    * :meth:`score_tails` and :meth:`score_heads` score a batch of queries against all
      entities as :obj:`[B, N]` matrices, from :meth:`prepare_scoring`'s tables computed once
      per evaluation pass; a relation-dependent fusion is computed once per relation of the
      batch, from its relation-free basis where it has one;
    * :meth:`score_negatives` scores :math:`K` sampled candidates per positive, computing
      the representations once per distinct entity of the batch and, where the interaction
      has one, with a fused gather-and-score kernel;
    * :meth:`score_queries` gives the 1-N logits (with gradient);
    * the training regimes (:mod:`torch_mmkg.nn.regimes`) are outside the model:
      :meth:`loss` is negative sampling with the model's default loss, :meth:`loss_1n` 1-N
      scoring, and every model trains under either;
    * :meth:`test` is the filtered, both-sided protocol of the papers.

    Bad input fails early with a :class:`ValueError` that names the argument (see
    :mod:`torch_mmkg.nn.validation`): the constructor checks :obj:`num_nodes`,
    :obj:`num_relations` and :obj:`hidden_channels`, and the public entry points check
    their index tensors, once, before dispatching to the unchecked implementations: integer
    dtypes only, entity ids in :math:`[0, N)`, relation ids in :math:`[0, R)`, or
    :math:`[0, 2R)` where inverse relations may be addressed directly (:meth:`forward`,
    :meth:`score_tails`, :meth:`loss_1n` of a model with inverse relations).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        hidden_channels (int): The embedding size :math:`d`.
        interaction (Interaction): The score function.
        loss (torch.nn.Module): The default training loss (a
            :class:`~torch_mmkg.nn.loss.KGELoss` for negative sampling or a 1-N loss such
            as :class:`~torch_mmkg.nn.loss.BCELoss`); it also sets the default regime.
        inverse_relations (bool, optional): Learn :math:`2R` relations, the second half
            being inverses, and predict heads as tails of the inverse relation.
            (default: :obj:`False`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` penalty on
            the representations of each batch. (default: :obj:`None`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
        representation (EntityRepresentation, optional): The entity representation
            (default: a structural embedding of width
            :obj:`interaction.entity_width(hidden_channels)`).
        fusion (Fusion, optional): (default: :class:`~torch_mmkg.nn.fusion.SingleSlot`)
        relation_scale (float, optional): Relation embeddings are multiplied by it (RotatE's
            phases). (default: :obj:`1.0`)
        regularize (str, optional): What the penalty sees: :obj:`"scored"` (the
            representations scored, candidates included), :obj:`"raw"` (the sum of the
            penalties of the raw structural and relation embeddings of the positives, as
            LBMKGC does) or :obj:`"raw_batch"` (the mean of the penalties of the raw
            structural embeddings of the heads and of the tails of the positives *and* the
            negatives and of the raw relation embeddings, :math:`\lambda\,(\overline{h^2}
            + \overline{t^2} + \overline{r^2}) / 3` for :math:`L_2`, as the OpenKE-based
            code of NATIVE's authors computes it; under 1-N, the mean of the penalties of
            the query entities and relations). (default: :obj:`"scored"`)
        sparse (bool, optional): Sparse embedding gradients. (default: :obj:`False`)
    """
    #: Whether the default training regime is 1-N scoring (else negative sampling).
    one_to_n: bool = False
    #: Whether negative-sampling training filters the known training triples from the
    #: negatives by default (:obj:`TrainConfig(filter_negatives=None)` takes it): where the
    #: paper's sampler does (VBKGC's Eq. 14).
    default_filter_negatives: bool = False
    #: Old state-dict keys (regular expressions) and their new names (checkpoints of
    #: torch_mmkg 0.1, where the model held its parameters itself).
    legacy_keys: Tuple[Tuple[str, str], ...] = ((r'node_emb\.', 'representation.node_emb.'), )

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 interaction: Optional[Interaction], loss: torch.nn.Module,
                 inverse_relations: bool = False, regularization: Optional[str] = None,
                 regularization_weight: float = 0.0,
                 representation: Optional[EntityRepresentation] = None,
                 fusion: Optional[Fusion] = None, relation_scale: float = 1.0,
                 regularize: str = 'scored', sparse: bool = False,
                 relation_embedding: bool = True):
        num_nodes, num_relations, hidden_channels = check_sizes(self, num_nodes, num_relations,
                                                                hidden_channels)
        choice(self, 'regularization', regularization, (None, 'l2', 'n3'))
        choice(self, 'regularize', regularize, ('scored', 'raw', 'raw_batch'))
        regularization_weight = real(self, 'regularization_weight', regularization_weight, 0.0)
        torch.nn.Module.__init__(self)  # PyG's constructor would allocate its own tables
        self.num_nodes = num_nodes
        self.num_relations = num_relations
        self.hidden_channels = hidden_channels
        self.inverse_relations = bool(inverse_relations)
        self.interaction = interaction
        self.loss_fn = loss
        self.regularization = regularization
        self.regularization_weight = regularization_weight
        self.regularize = regularize
        self.relation_scale = float(relation_scale)
        if interaction is None:  # a preset that scores by itself builds its own parts
            return
        if representation is None:
            representation = EntityRepresentation(
                num_nodes, interaction.entity_width(hidden_channels), sparse=sparse)
        self.representation = representation
        representation.owner_name = type(self).__name__  # named in its error messages
        self.fusion = fusion if fusion is not None else SingleSlot(representation.channels)
        if relation_embedding:  # else the preset registers its own relation parameters
            self.rel_emb = torch.nn.Embedding(self.num_relation_embeddings,
                                              interaction.relation_width(hidden_channels),
                                              sparse=sparse)

    @property
    def node_emb(self) -> torch.nn.Embedding:
        r"""The structural entity embedding (PyG's :obj:`node_emb`)."""
        return self.representation.node_emb

    @property
    def modalities(self) -> List[str]:
        r"""The modality names, in slot order."""
        return list(self.representation.modalities)

    @property
    def supports_twins(self) -> bool:
        r"""Whether the model scores twins negatives (:class:`~torch_mmkg.loader.Negatives`):
        a multi-view interaction with unimodal and cross-modal terms over a structural and a
        multi-modal view (TBKGC, VBKGC)."""
        return bool(getattr(self.interaction, 'supports_twins', False))

    @property
    def default_regime(self) -> str:
        r""":obj:`"1-n"` or :obj:`"negative_sampling"`, the regime of the paper."""
        return '1-n' if self.one_to_n else 'negative_sampling'

    @property
    def num_relation_embeddings(self) -> int:
        r"""Rows of the relation table: :math:`2R` with inverse relations, else :math:`R`."""
        return 2 * self.num_relations if self.inverse_relations else self.num_relations

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module: the structural table, the
        relations, the encoders, the fusion and the interaction, in this order."""
        self.representation.reset_structure()
        self.representation.init(self.rel_emb.weight)
        self.representation.reset_encoders()
        self.fusion.reset_parameters()
        if hasattr(self.interaction, 'reset_parameters'):
            self.interaction.reset_parameters()

    # Representations ##########################################################################

    def modality_stack(self, index: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        r"""The entity representations :math:`[*, S, D]` of :obj:`index` (all entities if
        :obj:`None`; slot 0 the structural one) and their availability :math:`[*, S]`: the
        interface of :class:`~torch_mmkg.training.CoMAT`."""
        return self.representation(index)

    def fuse(self, stack: Tensor, mask: Tensor, rel_type: Optional[Tensor] = None) -> Tensor:
        r"""The fusion of stacks (in the context of :obj:`rel_type`, broadcast against the
        stack's leading dimensions, for a relation-dependent fusion)."""
        if not self.fusion.relation_dependent:
            return self.fusion(stack, mask)[0]
        if rel_type is None:
            raise RuntimeError(f"{type(self).__name__}'s entity representation depends on "
                               f"the relation: pass rel_type")
        return self.fusion(stack, mask, rel_type.expand(stack.shape[:-2]))[0]

    def entity(self, index: Optional[Tensor] = None,
               rel_type: Optional[Tensor] = None) -> Tensor:
        r"""The representations the interaction scores of :obj:`index` (all entities if
        :obj:`None`), in the context of :obj:`rel_type` where the fusion needs one."""
        return self._represent(index, rel_type)[0]

    def _represent(self, index: Optional[Tensor], rel_type: Optional[Tensor] = None,
                   query: bool = False) -> Tuple[Tensor, Tensor]:
        r"""The fused representations of :obj:`index` and their slot mask: computed once
        per distinct entity, except for the query entities of a representation with
        :attr:`~torch_mmkg.nn.EntityRepresentation.relation_aware_queries` (in the context
        of their relation)."""
        if query and self.representation.relation_aware_queries:
            stack, mask = self.representation(index, rel_type)
        elif index is not None and (self.representation.costly or rel_type is not None):
            stack, mask, (inv, ) = self.representation.unique(index)
            stack, mask = gather(stack, inv), gather(mask, inv)
        else:
            stack, mask = self.representation(index)
        return self.fuse(stack, mask, rel_type), mask

    def _masks(self, h_mask: Optional[Tensor], t_mask: Optional[Tensor]) -> Dict[str, Any]:
        r"""The slot masks as keyword arguments, for an interaction that judges views by
        them (an ensemble); none for any other."""
        return dict(h_mask=h_mask, t_mask=t_mask) if self.interaction.uses_masks else {}

    def _interact(self, h: Tensor, r: Tensor, t: Tensor, h_mask: Optional[Tensor] = None,
                  t_mask: Optional[Tensor] = None) -> Tensor:
        r"""The interaction, with the slot masks where it judges views by them."""
        return self.interaction(h, r, t, **self._masks(h_mask, t_mask))

    def joint(self, index: Tensor, rel_type: Tensor) -> Tensor:
        r"""The representations of :obj:`index` in the context of :obj:`rel_type`
        (broadcast)."""
        index, rel_type = torch.broadcast_tensors(index, rel_type)
        return self.entity(index, rel_type)

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""Relation representations :math:`[*, D_r]`."""
        r = self.rel_emb(rel_type)
        return r if self.relation_scale == 1.0 else r * self.relation_scale

    def score_stacks(self, head_stack: Tensor, head_mask: Tensor, rel_type: Tensor,
                     tail_stack: Tensor, tail_mask: Tensor) -> Tensor:
        r"""Scores of triples given the heads' and tails' stacks (see
        :meth:`modality_stack`), broadcast over their leading dimensions: the interface
        :class:`~torch_mmkg.training.CoMAT` and :class:`~torch_mmkg.training.MAT` score
        synthetic entities through (with the masks, as :meth:`forward`, for an interaction
        that judges views by them)."""
        return self._interact(self.fuse(head_stack, head_mask, rel_type),
                              self.relation(rel_type),
                              self.fuse(tail_stack, tail_mask, rel_type), head_mask, tail_mask)

    def prepare_scoring(self) -> Any:
        r"""What :meth:`score_tails`/:meth:`score_heads` need for all entities, once per
        evaluation pass (a :class:`ScoringCache`). With disk-backed features larger than
        the full-read limit and without gradient (evaluation), the entity side is computed
        in entity chunks (:meth:`~torch_mmkg.nn.EntityRepresentation.forward_chunked`), so
        that the features are streamed, never held whole."""
        rep = self.representation
        if not torch.is_grad_enabled() and getattr(rep, 'streams', lambda: False)():
            stack, mask, extras = rep.forward_chunked()
        else:
            stack, mask, extras = rep.forward_with_extras(None)
        if not self.fusion.relation_dependent:
            table = self.fusion(stack, mask)[0]
            return ScoringCache(table=table, mask=mask, extras=extras,
                                candidates=self.interaction.prepare_candidates(table, mask))
        if self.fusion.decomposable:
            basis, state = self.fusion.decompose(stack, mask)
            return ScoringCache(basis=basis, state=state, extras=extras)
        return ScoringCache(stack=stack, mask=mask, extras=extras)

    def _relation_table(self, cache: ScoringCache, rel: Tensor) -> Tensor:
        r"""The all-entity table in the context of relation :obj:`rel` (a 0-dim id)."""
        if cache.basis is not None:
            return torch.einsum('np,npd->nd', self.fusion.mix(cache.state, rel), cache.basis)
        return self.fusion(cache.stack, cache.mask,
                           rel.expand(cache.stack.shape[:-2]))[0]

    # Input checks #############################################################################

    #: Whether the entry points check their index tensors (off inside
    #: :meth:`trusted_indices`).
    _index_checks_on: bool = True

    def _entity_ids(self, name: str, index: Tensor) -> IndexSpec:
        r"""The check of an argument of entity ids, :math:`[0, N)`."""
        return IndexSpec(name, index, self.num_nodes, 'entity')

    def _relation_ids(self, name: str, index: Tensor, inverse: bool = False) -> IndexSpec:
        r"""The check of an argument of relation ids: :math:`[0, R)`, or, with
        :obj:`inverse` on a model with inverse relations, :math:`[0, 2R)` (the inverse of
        relation :math:`r` being :math:`r + R`)."""
        R = self.num_relations
        if not self.inverse_relations:
            return IndexSpec(name, index, R, 'relation')
        if inverse:
            return IndexSpec(name, index, 2 * R, 'relation',
                             f'{R} relations, then their inverses')
        return IndexSpec(name, index, R, 'relation',
                         f'their inverses r + {R} are applied internally')

    def _check(self, where: str, *specs: IndexSpec) -> Tuple[Tensor, ...]:
        r"""The index arguments of entry point :obj:`where`, checked and as :obj:`int64`
        (see :func:`~torch_mmkg.nn.validation.check_indices`)."""
        if not self._index_checks_on:
            return tuple(spec.index for spec in specs)
        return check_indices(where, *specs)

    def _check_triples(self, where: str, head_index: Tensor, rel_type: Tensor,
                       tail_index: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Checked :obj:`(head_index, rel_type, tail_index)` of triples (relation ids in
        :math:`[0, R)`), as :obj:`int64`."""
        return self._check(where, self._entity_ids('head_index', head_index),
                           self._relation_ids('rel_type', rel_type),
                           self._entity_ids('tail_index', tail_index))

    def _check_negatives(self, where: str, head_index: Tensor, rel_type: Tensor,
                         tail_index: Tensor, negatives: Optional[Negatives]):
        specs = [self._entity_ids('head_index', head_index),
                 self._relation_ids('rel_type', rel_type),
                 self._entity_ids('tail_index', tail_index)]
        if negatives is not None:
            specs.append(self._entity_ids('negatives.index', negatives.index))
            index, ch = negatives.index, negatives.corrupt_head
            if index.dim() != 2 or ch.dtype != torch.bool or ch.shape not in (
                    index.shape[:1], index.shape):
                raise ValueError(f"{where}: negatives.index must be [B, K] and "
                                 f"negatives.corrupt_head a bool [B] (a side per positive) or "
                                 f"[B, K] (per negative) tensor, got {tuple(index.shape)} and "
                                 f"{ch.dtype} {tuple(ch.shape)}")
        checked = self._check(where, *specs)
        if negatives is not None and checked[3] is not negatives.index:
            negatives = negatives._replace(index=checked[3])
        if negatives is not None and negatives.twins and not self.supports_twins:
            raise ValueError(f"twins negative sampling needs a model with separate structural "
                             f"and multi-modal views scored by unimodal and cross-modal "
                             f"terms (e.g. TBKGC, VBKGC); {self.__class__.__name__} has one "
                             f"entity representation")
        return checked[0], checked[1], checked[2], negatives

    @contextlib.contextmanager
    def trusted_indices(self) -> Iterator[None]:
        r"""Within the block the entry points do not check their indices: for a caller that
        checked a whole input before passing it on in batches (the
        :class:`~torch_mmkg.evaluation.RankingEvaluator`)."""
        previous = self._index_checks_on
        self._index_checks_on = False
        try:
            yield
        finally:
            self._index_checks_on = previous

    # Scoring ##################################################################################

    def forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        r"""Returns the scores of the given triples (broadcasting their shapes).

        Args:
            head_index (torch.Tensor): The head indices, in :math:`[0, N)`.
            rel_type (torch.Tensor): The relation type, in :math:`[0, R)` (:math:`[0, 2R)`
                for a model with inverse relations).
            tail_index (torch.Tensor): The tail indices, in :math:`[0, N)`.

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        head_index, rel_type, tail_index = self._check(
            'forward', self._entity_ids('head_index', head_index),
            self._relation_ids('rel_type', rel_type, inverse=True),
            self._entity_ids('tail_index', tail_index))
        return self._forward(head_index, rel_type, tail_index)

    def _forward(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor) -> Tensor:
        r"""The scores of :meth:`forward` for checked indices."""
        rel = None
        if self.fusion.relation_dependent or self.representation.relation_aware_queries:
            head_index, rel_type, tail_index = torch.broadcast_tensors(head_index, rel_type,
                                                                       tail_index)
            rel = rel_type
        h, h_mask = self._represent(head_index, rel, query=True)
        t, t_mask = self._represent(tail_index, rel if self.fusion.relation_dependent else None)
        return self._interact(h, self.relation(rel_type), t, h_mask, t_mask)

    def score_tails(self, head_index: Tensor, rel_type: Tensor, cache: Any = None) -> Tensor:
        r"""Scores :math:`(h_b, r_b, e)` for every entity :math:`e`, as a :obj:`[B, N]`
        matrix; :obj:`cache` is the output of :meth:`prepare_scoring` (computed if
        :obj:`None`).

        Args:
            head_index (torch.Tensor): The head indices :math:`[B]`, in :math:`[0, N)`.
            rel_type (torch.Tensor): The relation types :math:`[B]`, in :math:`[0, R)`
                (:math:`[0, 2R)` for a model with inverse relations).
            cache (Any, optional): From :meth:`prepare_scoring`. (default: :obj:`None`)

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        head_index, rel_type = self._check(
            'score_tails', self._entity_ids('head_index', head_index),
            self._relation_ids('rel_type', rel_type, inverse=True))
        return self._score_tails(head_index, rel_type, cache)

    def _score_tails(self, head_index: Tensor, rel_type: Tensor, cache: Any = None) -> Tensor:
        r"""The scores of :meth:`score_tails` for checked indices."""
        return self._score_all(head_index, rel_type, cache, tails=True)

    def score_heads(self, rel_type: Tensor, tail_index: Tensor, cache: Any = None) -> Tensor:
        r"""Scores :math:`(e, r_b, t_b)` for every entity :math:`e`, as a :obj:`[B, N]`
        matrix. With inverse relations this is :math:`(t_b, r_b + R, e)`.

        Args:
            rel_type (torch.Tensor): The relation types :math:`[B]`, in :math:`[0, R)`.
            tail_index (torch.Tensor): The tail indices :math:`[B]`, in :math:`[0, N)`.
            cache (Any, optional): From :meth:`prepare_scoring`. (default: :obj:`None`)

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        rel_type, tail_index = self._check(
            'score_heads', self._relation_ids('rel_type', rel_type),
            self._entity_ids('tail_index', tail_index))
        return self._score_heads(rel_type, tail_index, cache)

    def _score_heads(self, rel_type: Tensor, tail_index: Tensor, cache: Any = None) -> Tensor:
        r"""The scores of :meth:`score_heads` for checked indices."""
        if self.inverse_relations:
            return self._score_tails(tail_index, rel_type + self.num_relations, cache)
        return self._score_all(tail_index, rel_type, cache, tails=False)

    def _query_rows(self, index: Tensor, rel_type: Tensor, cache: ScoringCache
                    ) -> Tuple[Tensor, Optional[Tensor]]:
        r"""The query representations of :obj:`index` and their slot mask: rows of the
        prepared table, or computed in the context of :obj:`rel_type` for a representation
        with relation-aware queries."""
        if self.representation.relation_aware_queries:
            return self._represent(index, rel_type, query=True)
        mask = None if cache.mask is None else gather(cache.mask, index)
        return gather(cache.table, index), mask

    def _score_all(self, index: Tensor, rel_type: Tensor, cache: Any, tails: bool) -> Tensor:
        r"""Queries :obj:`index` (heads if :obj:`tails`, else tails) against all entities;
        a relation-dependent fusion once per relation of the batch."""
        cache = self.prepare_scoring() if cache is None else cache
        score = self.interaction.score_tails if tails else (
            lambda q, r, E: self.interaction.score_heads(E, r, q))
        if cache.table is not None:  # one table for every relation
            q, q_mask = self._query_rows(index, rel_type, cache)
            r = self.relation(rel_type)
            if tails:
                return self.interaction.score_tails(q, r, cache.candidates,
                                                    **self._masks(q_mask, cache.mask))
            return self.interaction.score_heads(cache.candidates, r, q,
                                                **self._masks(cache.mask, q_mask))
        if index.numel() == 0:
            return self.relation(rel_type).new_zeros(0, self.num_nodes)
        parts, rows_all = [], []
        for r in torch.unique(rel_type).tolist():
            rows = (rel_type == r).nonzero().view(-1)
            E_r = self._relation_table(cache, rel_type.new_tensor(r))
            parts.append(score(gather(E_r, index[rows]), self.relation(rel_type[rows]), E_r))
            rows_all.append(rows)
        out = torch.cat(parts)
        return out.index_select(0, torch.argsort(torch.cat(rows_all)))

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""Scores of the positives :obj:`[B]` and their negatives :obj:`[B, K]` (the
        combined score of an ensemble); see :meth:`score_batch` for the indices (not
        checked here) and what training needs besides."""
        scored = self.score_batch(head_index, rel_type, tail_index, negatives)
        if len(scored.views) != 1 or scored.views[0][0] is not None:
            raise RuntimeError(f"{type(self).__name__} scores negatives per scorer: use "
                               f"score_batch()")
        return scored.views[0][1], scored.views[0][2]

    def score_batch(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                    negatives: Negatives) -> ScoredBatch:
        r"""Scores of the positives :obj:`[B]` and their negatives :obj:`[B, K]`, with the
        batch's penalty and extra loss terms (a :class:`~torch_mmkg.nn.regimes.ScoredBatch`).

        The representations are computed once per distinct entity of the batch
        (:meth:`EntityRepresentation.unique`); a relation-free fusion once per entity, a
        decomposable relation-dependent one as a basis per entity and weights per
        candidate; candidates are scored by the interaction's
        :meth:`~torch_mmkg.nn.interactions.Interaction.score_candidates` (a fused gather
        kernel where it has one). With inverse relations, head corruptions are scored as
        :meth:`score_heads` scores them, as tails of the inverse relation: the positive as
        :math:`(t, r + R, h)` and its negatives as :math:`(t, r + R, e)`. With twins
        negatives the interaction's unimodal terms score the corrupted entity and its
        cross-modal terms the corrupted entity with the replaced entity's structural view.

        Negatives whose side is drawn per negative (:obj:`negatives.corrupt_head` of shape
        :math:`[B, K]`, see :class:`~torch_mmkg.loader.NegativeSampler`) are scored as
        :math:`B \cdot K` rows of one candidate each against their side's anchor (an
        :math:`[B \cdot K, D]` gather, as for an unfused candidate gather); the positives are
        then scored as :math:`(h, r, t)`, also with inverse relations.
        """
        if self.interaction.uses_masks or self.representation.relation_aware_queries:
            return self._grid_negatives(head_index, rel_type, tail_index, negatives)
        if negatives.per_negative:
            return self._score_per_negative(head_index, rel_type, tail_index, negatives)
        cand, ch = negatives.index, negatives.corrupt_head
        B, K = cand.shape
        stack, mask, (hi, ti, ci) = self.representation.unique(head_index, tail_index, cand)
        rel_q = rel_type
        if self.inverse_relations:  # head corruptions as tails of the inverse relation
            hi, ti = torch.where(ch, ti, hi), torch.where(ch, hi, ti)
            rel_q = torch.where(ch, rel_type + self.num_relations, rel_type)
            ch = torch.zeros_like(ch)
        r = self.relation(rel_q)
        fusion = self.fusion
        needs_cand = (negatives.twins or (self.regularize == 'scored' and self._penalized))
        cand_repr = None
        if not fusion.relation_dependent:
            table = fusion(stack, mask)[0]
            h, t = gather(table, hi), gather(table, ti)
            anchor = torch.where(ch.view(-1, *[1] * (h.dim() - 1)), t, h)
            if needs_cand:
                cand_repr = gather(table, ci)
                neg = None
            else:
                neg = self.interaction.score_candidates(anchor, r, table, ci, ch)
        elif fusion.decomposable:
            basis, state = fusion.decompose(stack, mask)
            h = fusion.combine(gather(basis, hi), fusion.mix(_take_state(state, hi), rel_q))
            t = fusion.combine(gather(basis, ti), fusion.mix(_take_state(state, ti), rel_q))
            w = fusion.mix(_take_state(state, ci), rel_q[:, None].expand(B, K))
            anchor = torch.where(ch[:, None], t, h)
            if needs_cand:
                cand_repr = fusion.combine(gather(basis, ci), w)
                neg = None
            else:
                neg = self.interaction.score_weighted_candidates(anchor, r, basis, w, ci, ch)
        else:
            h = fusion(gather(stack, hi), gather(mask, hi), rel_q)[0]
            t = fusion(gather(stack, ti), gather(mask, ti), rel_q)[0]
            cand_repr = fusion(gather(stack, ci), gather(mask, ci),
                               rel_q[:, None].expand(B, K))[0]
            anchor = torch.where(ch.view(-1, *[1] * (h.dim() - 1)), t, h)
            neg = None
        pos = self.interaction(h, r, t)
        if neg is None and negatives.twins:
            neg = self._twins_scores(h, r, t, cand_repr, ch)
        elif neg is None:
            neg = self.interaction.score_gathered(anchor, r, cand_repr, ch)
        terms = self._negative_batch_penalty(head_index, rel_type, tail_index, negatives,
                                             (h, t, cand_repr, r))
        terms.update(self.batch_terms(stack, mask, hi, ti))
        return ScoredBatch([(None, pos, neg)], terms, {'entity_index': head_index})

    def _negative_batch_penalty(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                                negatives: Negatives, scored: Tuple) -> Dict[str, Tensor]:
        r"""The regularisation term of a negative-sampling batch: on the raw embeddings of
        positives and negatives (:obj:`"raw_batch"`), of the positives (:obj:`"raw"`) or on
        the scored views :obj:`(h, t, candidates, r)` (:obj:`"scored"`)."""
        if not self._penalized:
            return {}
        if self.regularize == 'raw_batch':
            return {'regularization': self._raw_batch_penalty(
                *self._negative_grid(head_index, tail_index, negatives), rel_type)}
        if self.regularize == 'raw':
            reps = (self.representation.structural(head_index), self.rel_emb(rel_type),
                    self.representation.structural(tail_index))
        else:
            h, t, cand_repr, r = scored
            reps = self._split_views(h, t, cand_repr, r)
        return {'regularization': self.penalty(*reps)}

    def _score_per_negative(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                            negatives: Negatives) -> ScoredBatch:
        r""":meth:`score_batch` of negatives with a side each (:obj:`corrupt_head`
        :math:`[B, K]`). Every positive is represented once per side, as a *virtual*
        positive: row :math:`b` corrupts the tail, row :math:`B + b` the head (as the tail of
        the inverse relation where the model has inverse relations), and each negative is a
        row of one candidate against its virtual positive."""
        cand, ch = negatives.index, negatives.corrupt_head
        B, K = cand.shape
        stack, mask, (hi, ti, ci) = self.representation.unique(head_index, tail_index, cand)
        if self.inverse_relations:
            vh, vt = torch.cat([hi, ti]), torch.cat([ti, hi])
            vrel = torch.cat([rel_type, rel_type + self.num_relations])
            vch = torch.zeros(2 * B, dtype=torch.bool, device=ch.device)
        else:
            vh, vt, vrel = torch.cat([hi, hi]), torch.cat([ti, ti]), torch.cat([rel_type] * 2)
            vch = torch.arange(2 * B, device=ch.device) >= B
        # The virtual positive of each negative, and the negatives as rows of one candidate.
        row = (torch.arange(B, device=ch.device)[:, None] + B * ch.long()).view(-1)
        rel_n, ch_n, ci_n = vrel[row], vch[row], ci.reshape(-1, 1)
        vr = self.relation(vrel)
        r, r_n = vr[:B], gather(vr, row)
        fusion = self.fusion
        needs_cand = (negatives.twins or (self.regularize == 'scored' and self._penalized))
        cand_repr = neg = None
        if not fusion.relation_dependent:
            table = fusion(stack, mask)[0]

            def represent(rows: Tensor, rel: Tensor) -> Tensor:
                return gather(table, rows)
            if needs_cand:
                cand_repr = gather(table, ci_n)
        elif fusion.decomposable:
            basis, state = fusion.decompose(stack, mask)

            def represent(rows: Tensor, rel: Tensor) -> Tensor:
                return fusion.combine(gather(basis, rows), fusion.mix(_take_state(state, rows),
                                                                      rel))
            w = fusion.mix(_take_state(state, ci_n), rel_n[:, None])
            if needs_cand:
                cand_repr = fusion.combine(gather(basis, ci_n), w)
        else:
            def represent(rows: Tensor, rel: Tensor) -> Tensor:
                return fusion(gather(stack, rows), gather(mask, rows), rel)[0]
            cand_repr = represent(ci_n, rel_n[:, None])
        h, t = represent(hi, rel_type), represent(ti, rel_type)
        pos = self.interaction(h, r, t)
        if negatives.twins:  # the positive's own views per row
            vh_repr, vt_repr = represent(vh, vrel), represent(vt, vrel)
            neg = self._twins_scores(gather(vh_repr, row), r_n, gather(vt_repr, row),
                                     cand_repr, ch_n)
        else:
            # The anchor (the entity kept) of each virtual positive: the positives' heads,
            # then their tails (in the context of the inverse relation, with one).
            va = represent(vh, vrel) if self.inverse_relations else torch.cat([h, t])
            anchor = gather(va, row)
            if cand_repr is not None:
                neg = self.interaction.score_gathered(anchor, r_n, cand_repr, ch_n)
            elif fusion.relation_dependent:
                neg = self.interaction.score_weighted_candidates(anchor, r_n, basis, w, ci_n,
                                                                 ch_n)
            else:
                neg = self.interaction.score_candidates(anchor, r_n, table, ci_n, ch_n)
        terms = self._negative_batch_penalty(head_index, rel_type, tail_index, negatives,
                                             (h, t, cand_repr, r))
        terms.update(self.batch_terms(stack, mask, hi, ti))
        return ScoredBatch([(None, pos, neg.view(B, K))], terms, {'entity_index': head_index})

    def _grid_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> ScoredBatch:
        r"""Negatives of a model whose queries depend on the relation or whose interaction
        judges views by their masks (an ensemble): the positive and its candidates as one
        :obj:`[B, 1 + K]` grid of triples through :meth:`forward` (head corruptions as tails
        of the inverse relation where the model has inverse relations)."""
        if negatives.twins:
            raise ValueError(f"{type(self).__name__} cannot score twins negatives")
        cand, ch = negatives.index, negatives.corrupt_head
        if negatives.per_negative:  # a side per negative; the positive as (h, r, t)
            if self.inverse_relations:
                R = self.num_relations
                H = torch.cat([head_index[:, None],
                               torch.where(ch, tail_index[:, None], head_index[:, None])], 1)
                T = torch.cat([tail_index[:, None], cand], dim=1)
                rel = torch.cat([rel_type[:, None],
                                 torch.where(ch, rel_type[:, None] + R, rel_type[:, None])], 1)
            else:
                H = torch.cat([head_index[:, None], torch.where(ch, cand, head_index[:, None])],
                              dim=1)
                T = torch.cat([tail_index[:, None], torch.where(ch, tail_index[:, None], cand)],
                              dim=1)
                rel = rel_type
        elif self.inverse_relations:
            anchor = torch.where(ch, tail_index, head_index)
            other = torch.where(ch, head_index, tail_index)
            rel = torch.where(ch, rel_type + self.num_relations, rel_type)
            H = anchor[:, None].expand(-1, cand.size(1) + 1)
            T = torch.cat([other[:, None], cand], dim=1)
        else:
            H = torch.cat([head_index[:, None], torch.where(ch[:, None], cand,
                                                            head_index[:, None])], dim=1)
            T = torch.cat([tail_index[:, None], torch.where(ch[:, None], tail_index[:, None],
                                                            cand)], dim=1)
            rel = rel_type
        scores = self._forward(H, rel[:, None] if rel.dim() == 1 else rel, T)
        terms = {}
        if self._penalized and self.regularize == 'raw_batch':
            terms['regularization'] = self._raw_batch_penalty(H, T, rel)
        elif self._penalized:
            terms['regularization'] = self.penalty(
                self.representation.structural(H), self.representation.structural(T))
        terms.update(self.query_terms(None, H[:, 0]))
        return ScoredBatch([(None, scores[:, 0], scores[:, 1:])], terms,
                           {'entity_index': H[:, 0]})

    def _twins_scores(self, h: Tensor, r: Tensor, t: Tensor, cand: Tensor,
                      ch: Tensor) -> Tensor:
        r"""Twins negatives: the unimodal terms of the corrupted triple, plus its cross-modal
        terms with the structural views of the positive's own head and tail."""
        flag = ch.view(-1, 1, 1, 1)
        nh = torch.where(flag, cand, h[:, None])
        nt = torch.where(flag, t[:, None], cand)
        r_ = r[:, None]
        own_h = torch.cat([h[:, None, :1].expand(-1, nh.size(1), -1, -1), nh[..., 1:, :]], -2)
        own_t = torch.cat([t[:, None, :1].expand(-1, nt.size(1), -1, -1), nt[..., 1:, :]], -2)
        return (self.interaction(nh, r_, nt, terms='unimodal') +
                self.interaction(own_h, r_, own_t, terms='crossmodal'))

    def _split_views(self, *reps: Optional[Tensor]) -> Tuple[Tensor, ...]:
        r"""The tensors the penalty sees, :obj:`(entities..., relation)`: a multi-view
        entity representation view by view."""
        *entities, relation = reps
        multiview = hasattr(self.interaction, 'num_views')
        out = []
        for x in entities:
            if x is not None:
                out.extend(x.unbind(-2) if multiview else (x, ))
        return tuple(out) + (relation, )

    def batch_terms(self, stack: Tensor, mask: Tensor, head_rows: Tensor, tail_rows: Tensor
                    ) -> Dict[str, Tensor]:
        r"""Extra loss terms of a negative-sampling batch (weighted), from the stack and
        mask of its distinct entities and the rows of its positives' heads and tails in
        them. None by default (LBMKGC's joint CMoA alignment is one)."""
        return {}

    @property
    def _penalized(self) -> bool:
        return bool(self.regularization) and bool(self.regularization_weight)

    def penalty(self, *representations: Tensor) -> Tensor:
        r"""The configured regularisation of the given representations."""
        if not self._penalized:
            return representations[0].new_zeros(())
        if self.regularization == 'l2':
            return l2_regularization(*representations, weight=self.regularization_weight)
        return n3_regularization(*representations, weight=self.regularization_weight,
                                 complex_=self.interaction.complex_entities)

    def _row_penalty(self, x: Tensor) -> Tensor:
        r"""The configured penalty of each row of :obj:`x` :math:`[*, D]`, unweighted, as
        :math:`[*]`: :meth:`penalty` of :obj:`x` is the weighted mean of it over the rows."""
        if self.regularization == 'l2':
            return x.pow(2).mean(dim=-1)
        if self.interaction.complex_entities:
            re, im = x.chunk(2, dim=-1)
            return torch.sqrt(re**2 + im**2).pow(3).sum(dim=-1)
        return x.abs().pow(3).sum(dim=-1)

    @staticmethod
    def _negative_grid(head_index: Tensor, tail_index: Tensor,
                       negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""The heads and tails :math:`[B, 1 + K]` of the positives (column 0) and their
        negatives, the corrupted side drawn per positive or per negative."""
        cand, ch = negatives.index, negatives.corrupt_head
        side = ch if ch.dim() == cand.dim() else ch[:, None]
        h, t = head_index[:, None], tail_index[:, None]
        return (torch.cat([h, torch.where(side, cand, h)], dim=1),
                torch.cat([t, torch.where(side, t, cand)], dim=1))

    def _raw_batch_penalty(self, heads: Tensor, tails: Tensor, rel_type: Tensor) -> Tensor:
        r"""The :obj:`"raw_batch"` penalty: :math:`\lambda` times the mean of the penalties
        of the raw structural embeddings of :obj:`heads`, of :obj:`tails` (every entry
        counted, repeats included) and of the raw relation embeddings of :obj:`rel_type`,
        computed once per distinct entity."""
        n = heads.numel()
        ids, inv = torch.unique(torch.cat([heads.reshape(-1), tails.reshape(-1)]),
                                return_inverse=True)
        rows = self._row_penalty(self.representation.structural(ids))
        total = (rows[inv[:n]].mean() + rows[inv[n:]].mean() +
                 self._row_penalty(self.rel_emb(rel_type)).mean())
        return self.regularization_weight * total / 3

    def _query_relation_ids(self, name: str, index: Tensor) -> IndexSpec:
        r"""The check of 1-N query relations: :math:`[0, 2R)`, :math:`r + R` being the
        inverse relation, or, for a model without inverse relations, the head query
        :math:`(?, r, e)`."""
        if self.inverse_relations:
            return self._relation_ids(name, index, inverse=True)
        R = self.num_relations
        return IndexSpec(name, index, 2 * R, 'relation',
                         f'{R} relations, then r + {R} for the head queries (?, r, e)')

    def score_queries(self, entity_index: Tensor, rel_type: Tensor) -> QueryScores:
        r"""The 1-N logits :obj:`[B, N]` of queries :math:`(e, r, ?)`, with gradient, per
        scorer (one for most models, one per view for an ensemble), with the batch's penalty
        and terms (a :class:`~torch_mmkg.nn.regimes.QueryScores`). Relation ids are in
        :math:`[0, 2R)`: :math:`r + R` is the inverse relation of a model with inverse
        relations, and the head query :math:`(?, r, e)` of any other model."""
        cache = self.prepare_scoring()
        R = self.num_relations
        heads = None if self.inverse_relations else rel_type >= R
        e, rel = None, rel_type
        if heads is not None and bool(heads.any()):
            rel = torch.where(heads, rel_type - R, rel_type)
            rows_t, rows_h = (~heads).nonzero().view(-1), heads.nonzero().view(-1)
            logits = torch.cat([self._score_tails(entity_index[rows_t], rel[rows_t], cache),
                                self._score_heads(rel[rows_h], entity_index[rows_h], cache)])
            logits = logits.index_select(0, torch.argsort(torch.cat([rows_t, rows_h])))
            views = [(None, logits, None)]
        elif cache.table is not None:
            e, e_mask = self._query_rows(entity_index, rel_type, cache)
            r = self.relation(rel_type)
            views = self.interaction.view_logits(e, r, cache.candidates,
                                                 **self._masks(e_mask, cache.mask))
        else:
            views = [(None, self._score_tails(entity_index, rel_type, cache), None)]
        terms = {}
        if self._penalized:
            if self.regularize != 'scored' or e is None:
                reps = (self.representation.structural(entity_index), self.rel_emb(rel))
            else:
                reps = self._split_views(e, r)
            terms['regularization'] = self.penalty(*reps)
            if self.regularize == 'raw_batch':  # the mean of the terms, as in a batch
                terms['regularization'] = terms['regularization'] / len(reps)
        terms.update(self.query_terms(cache, entity_index))
        return QueryScores(views, terms, {'entity_index': entity_index})

    def query_terms(self, cache: Optional[ScoringCache], entity_index: Tensor
                    ) -> Dict[str, Tensor]:
        r"""Extra loss terms (weighted) over the query entities of a batch: of a 1-N batch,
        with the prepared all-entity :obj:`cache` (and the representation's
        :obj:`extras`) it computed; of a negative-sampling batch scored as a grid, without
        (:obj:`None`). None by default (MoMoK's ExID and LBMKGC's CMoA are such terms)."""
        return {}

    # Training #################################################################################

    def loss(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
             negatives: Optional[Negatives] = None) -> Tensor:
        r"""The negative-sampling loss of a batch of positives and their negatives, with the
        model's default loss (:class:`~torch_mmkg.nn.regimes.NegativeSampling`).

        Without :obj:`negatives` one uniform negative per positive is drawn, as PyG does.

        Args:
            head_index (torch.Tensor): The head indices, in :math:`[0, N)`.
            rel_type (torch.Tensor): The relation types, in :math:`[0, R)`.
            tail_index (torch.Tensor): The tail indices, in :math:`[0, N)`.
            negatives (Negatives, optional): From :meth:`loader` or a
                :class:`~torch_mmkg.loader.NegativeSampler`. (default: :obj:`None`)

        Raises:
            ValueError: If an index tensor (:obj:`negatives.index` included) has a
                non-integer dtype or an id out of range (relation ids in :math:`[0, R)`).
        """
        from torch_mmkg.nn.regimes import NegativeSampling
        return NegativeSampling().loss(self, (head_index, rel_type, tail_index, negatives)).loss

    def loss_1n(self, entity_index: Tensor, rel_type: Tensor, target: Tensor) -> Tensor:
        r"""The 1-N loss of queries :math:`(e, r, ?)` against their :obj:`[B, N]` targets,
        with the model's default 1-N loss (:class:`~torch_mmkg.nn.regimes.OneToN`).

        Args:
            entity_index (torch.Tensor): The query entities :math:`[B]`, in :math:`[0, N)`.
            rel_type (torch.Tensor): The query relations :math:`[B]`, in :math:`[0, R)`
                (:math:`[0, 2R)` for a model with inverse relations).
            target (torch.Tensor): The :obj:`[B, N]` 0/1 targets.

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        from torch_mmkg.nn.regimes import OneToN
        return OneToN().loss(self, (entity_index, rel_type, target)).loss

    def auxiliary_parameters(self) -> list:
        r"""Parameters trained by their own objective, :meth:`auxiliary_loss`, with their own
        optimiser, and excluded from the main one (e.g. MoMoK's CLUB estimators). None by
        default."""
        return []

    def auxiliary_loss(self, entity_index: Optional[Tensor] = None) -> Optional[Tensor]:
        r"""The objective of :meth:`auxiliary_parameters` on the entities
        :obj:`entity_index` of a training batch (a regime's :obj:`context`), to be minimised
        after each main step (:obj:`None`: nothing to do)."""
        return None

    def loader(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               num_negatives: int = 0, strategy: str = 'uniform',
               known: Optional[KnownTriples] = None,
               generator: Optional[torch.Generator] = None, twins: bool = False,
               side_per: str = 'positive', **kwargs) -> TripleLoader:
        r"""Returns a mini-batch loader over the given triples.

        Args:
            head_index (torch.Tensor): The head indices.
            rel_type (torch.Tensor): The relation type.
            tail_index (torch.Tensor): The tail indices.
            num_negatives (int, optional): Negatives per positive :math:`K`; with :obj:`0`
                the loader yields :obj:`(head, rel, tail)` like PyG's. (default: :obj:`0`)
            strategy (str, optional): :obj:`"uniform"` or :obj:`"bernoulli"`.
            known (KnownTriples, optional): Filter these from the negatives.
            generator (torch.Generator, optional): Randomness of shuffling and sampling.
            twins (bool, optional): Twins negatives (models with :attr:`supports_twins`).
            side_per (str, optional): Draw the corrupted side per :obj:`"positive"` or per
                :obj:`"negative"` (see :class:`~torch_mmkg.loader.NegativeSampler`).
                (default: :obj:`"positive"`)
            **kwargs: :obj:`batch_size`, :obj:`shuffle`, :obj:`drop_last`,
                :obj:`replacement` (of :class:`~torch_mmkg.loader.TripleLoader`).

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        head_index, rel_type, tail_index = self._check_triples('loader', head_index, rel_type,
                                                               tail_index)
        sampler = None
        if twins and not self.supports_twins:
            raise ValueError(f"{self.__class__.__name__} cannot be trained with twins "
                             f"negative sampling (it has one entity representation)")
        if twins and not num_negatives:
            raise ValueError("twins negative sampling needs num_negatives >= 1")
        if num_negatives:
            sampler = NegativeSampler(
                self.num_nodes, num_negatives, strategy, known,
                self._head_probability(strategy, head_index, rel_type, tail_index), generator,
                twins=twins, side_per=side_per)
        return TripleLoader(head_index, rel_type, tail_index, sampler=sampler,
                            generator=generator, **kwargs)

    def _head_probability(self, strategy, head_index, rel_type, tail_index):
        if strategy != 'bernoulli':
            return None
        return relation_head_probability(head_index, rel_type, tail_index, self.num_relations)

    def loader_1n(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                  **kwargs) -> OneToNLoader:
        r"""Returns a 1-N loader of both sides' queries: :math:`(h, r, ?)` and
        :math:`(t, r + R, ?)`, the latter being the inverse query of a model with inverse
        relations, and for any other model the head query :math:`(?, r, t)`, which
        :meth:`score_queries` scores by :meth:`score_heads`.

        Args:
            head_index (torch.Tensor): The head indices, in :math:`[0, N)`.
            rel_type (torch.Tensor): The relation types, in :math:`[0, R)`.
            tail_index (torch.Tensor): The tail indices, in :math:`[0, N)`.
            **kwargs: Of :class:`~torch_mmkg.loader.OneToNLoader`.

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        head_index, rel_type, tail_index = self._check_triples('loader_1n', head_index,
                                                               rel_type, tail_index)
        kwargs.setdefault('inverse_relations', True)
        return OneToNLoader(head_index, rel_type, tail_index, self.num_nodes,
                            self.num_relations, **kwargs)

    @torch.no_grad()
    def random_sample(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                      num_negatives: int = 1, strategy: str = 'uniform',
                      known: Optional[KnownTriples] = None,
                      generator: Optional[torch.Generator] = None, side_per: str = 'positive'
                      ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Randomly samples negative triples by replacing either the head or the tail (but
        not both) of each positive, :obj:`num_negatives` times; PyG's signature, returning
        flat :math:`[B \cdot K]` tensors ordered positive by positive.

        Args:
            head_index (torch.Tensor): The head indices.
            rel_type (torch.Tensor): The relation type.
            tail_index (torch.Tensor): The tail indices.
            num_negatives (int, optional): :math:`K`. (default: :obj:`1`)
            strategy (str, optional): :obj:`"uniform"` or :obj:`"bernoulli"`.
            known (KnownTriples, optional): Never return these triples.
            generator (torch.Generator, optional): Source of randomness.
            side_per (str, optional): The side is drawn per :obj:`"positive"` or per
                :obj:`"negative"`. (default: :obj:`"positive"`)

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        head_index, rel_type, tail_index = self._check_triples('random_sample', head_index,
                                                               rel_type, tail_index)
        neg = NegativeSampler(
            self.num_nodes, num_negatives, strategy, known,
            self._head_probability(strategy, head_index, rel_type, tail_index),
            generator, side_per=side_per)(head_index, rel_type, tail_index)
        h, r, t = neg.triples(head_index, rel_type, tail_index)
        return h.reshape(-1), r.reshape(-1), t.reshape(-1)

    # Evaluation ###############################################################################

    @torch.no_grad()
    def test(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
             batch_size: Optional[int] = None, k: int = 10, log: bool = True,
             known: Optional[KnownTriples] = None, side: str = 'both',
             rank: str = 'realistic') -> Tuple[float, float, float]:
        r"""Evaluates the model by the 1-based mean rank, the MRR and Hits@:math:`k` over
        all entities, filtered against :obj:`known` (pass train + valid + test, e.g.
        :meth:`KnownTriples.from_data(data, 'all') <torch_mmkg.data.KnownTriples.from_data>`,
        for the standard protocol; :obj:`None` gives raw ranks), both sides by default. For
        the full report use :class:`~torch_mmkg.evaluation.RankingEvaluator`.

        Args:
            head_index (torch.Tensor): The head indices.
            rel_type (torch.Tensor): The relation type.
            tail_index (torch.Tensor): The tail indices.
            batch_size (int, optional): Queries per batch (:obj:`None`: sized to the number
                of entities, see :class:`~torch_mmkg.evaluation.RankingEvaluator`).
            k (int, optional): The :math:`k` in Hits@:math:`k`. (default: :obj:`10`)
            log (bool, optional): Show a progress bar. (default: :obj:`True`)
            known (KnownTriples, optional): The filter. (default: :obj:`None`)
            side (str, optional): :obj:`"head"`, :obj:`"tail"` or :obj:`"both"`.
            rank (str, optional): :obj:`"realistic"`, :obj:`"optimistic"` or
                :obj:`"pessimistic"`. (default: :obj:`"realistic"`)

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        from torch_mmkg.evaluation import RankingEvaluator
        head_index, rel_type, tail_index = self._check_triples('test', head_index, rel_type,
                                                               tail_index)
        sides = ('head', 'tail') if side == 'both' else (side, )
        result = RankingEvaluator(known, batch_size, sides, ks=(k, ), progress=log).evaluate(
            self, head_index, rel_type, tail_index)  # checked once there, not per batch
        m = result.metrics(rank, side)
        return m['mr'], m['mrr'], m[f'hits@{k}']

    # The data a state dict does not hold ######################################################

    def feature_fingerprint(self) -> Dict[str, str]:
        r"""A digest of every buffer the state dict leaves out (the frozen modality features
        and masks of multi-modal models), keyed by buffer name: two models with the same
        fingerprint were built on the same feature values. Empty for structural models.

        The digest is the first 16 hex digits of the SHA-256 of the buffer's dtype, shape and
        bytes; it is cached until a buffer changes (in place or replaced). Disk-backed
        features (:class:`~torch_mmkg.data.feature_store.DiskFeatures`) are digested the
        same way (:meth:`~torch_mmkg.data.feature_store.DiskFeatures.fingerprint`, one
        streamed pass per file version, cached), so that a model on disk-backed features
        has the fingerprint of the same model on the same values in memory; features
        normalised as they are read carry a :obj:`"+l2"` suffix."""
        buffers, disk = [], []

        def short(full: str) -> str:  # named as in torch_mmkg 0.1, where the model held them
            return full[len('representation.'):] if full.startswith('representation.') \
                else full
        for prefix, module in self.named_modules():
            for name in sorted(module._non_persistent_buffers_set):
                buf = module._buffers.get(name)
                if buf is not None:
                    buffers.append((short(f'{prefix}.{name}' if prefix else name), buf))
            transforms = module.__dict__.get('_feature_transforms', {})
            for name, value in sorted(vars(module).items()):
                if is_disk_features(value):
                    tag = transforms.get(name[2:]) if name.startswith('x_') else None
                    disk.append((short(f'{prefix}.{name}' if prefix else name), value,
                                 f'+{tag}' if tag else ''))
        key = tuple((n, b.data_ptr(), b._version, str(b.device), tuple(b.shape), b.dtype)
                    for n, b in buffers)
        cached = getattr(self, '_fingerprint_cache', None)
        if cached is None or cached[0] != key:
            cached = (key, {n: _digest(b) for n, b in buffers})
            self._fingerprint_cache = cached
        out = dict(cached[1])
        out.update({n: x.fingerprint() + tag for n, x, tag in disk})
        return out

    def get_extra_state(self) -> Dict[str, Any]:
        r"""Stored in the state dict (key :obj:`_extra_state`): the
        :meth:`feature_fingerprint`, so that a state is not silently loaded into a model built
        on other features."""
        return {'feature_fingerprint': self.feature_fingerprint()}

    def set_extra_state(self, state: Any):
        r"""Warns (:class:`FeatureMismatchWarning`) when the state was saved from a model built
        on other feature values than this one: its scores would differ from the saved model's.
        (:class:`~torch_mmkg.training.Trainer` refuses such a checkpoint on resume.)"""
        saved = state.get('feature_fingerprint') if isinstance(state, dict) else None
        if saved is None:
            return
        diff = feature_mismatch(saved, self.feature_fingerprint())
        if diff:
            warnings.warn(f"{self.__class__.__name__}: the state was saved from a model built on "
                          f"other features ({diff}); its scores will differ from the saved "
                          f"model's", FeatureMismatchWarning, stacklevel=4)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A state dict of torch_mmkg 0.1 has other names for some parameters (the model held
        # them before it was a composition) and no '_extra_state': load it without the check.
        for old, new in self.legacy_keys:
            pattern = re.compile(re.escape(prefix) + old)
            for k in [k for k in state_dict if pattern.match(k)]:
                renamed = pattern.sub(prefix + new, k, count=1)
                if renamed not in state_dict:
                    state_dict[renamed] = state_dict.pop(k)
        key = prefix + '_extra_state'
        had = key in state_dict
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if not had and key in missing_keys:
            missing_keys.remove(key)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels})')
