import contextlib
import hashlib
import warnings
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor

from torch_mmkg.data.known_triples import KnownTriples
from torch_mmkg.loader import (Negatives, NegativeSampler, OneToNLoader, TripleLoader,
                               relation_head_probability)
from torch_mmkg.nn.interactions import Interaction
from torch_mmkg.nn.kernels import compiled_forward
from torch_mmkg.nn.loss import BCELoss, KGELoss, l2_regularization, n3_regularization
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


def compact_batch_index(head_index: Tensor, tail_index: Tensor, candidates: Tensor,
                        num_nodes: int) -> Tuple[Optional[Tensor], Tensor, Tensor, Tensor]:
    r"""The entities a negative-sampling batch touches, for models whose entity
    representations are costly (projections of features): :obj:`(index, h, t, c)` where
    :obj:`index` holds the distinct entities (:obj:`None` when the batch touches about as
    many entities as there are, so that all are computed) and :obj:`h`, :obj:`t`,
    :obj:`c` address rows of the representations of :obj:`index`."""
    B, K = candidates.shape
    flat = torch.cat([head_index, tail_index, candidates.reshape(-1)])
    if flat.numel() >= num_nodes:  # nearly every entity occurs: take them all
        return None, head_index, tail_index, candidates
    uniq, inv = torch.unique(flat, return_inverse=True)
    return uniq, inv[:B], inv[B:2 * B], inv[2 * B:].view(B, K)


class KGEModel(torch.nn.Module):
    r"""The base class of all :mod:`torch_mmkg` models: PyG's
    :class:`torch_geometric.nn.kge.KGEModel` surface (:meth:`forward`, :meth:`loss`,
    :meth:`loader`, :meth:`random_sample`, :meth:`test`) over a composition of an entity and
    relation *representation* and an :class:`~torch_mmkg.nn.interactions.Interaction`, plus
    what PyG lacks:

    * :meth:`score_tails` and :meth:`score_heads` score a batch of queries against all
      entities as :obj:`[B, N]` matrices, with the all-entity representation computed once
      per evaluation pass (:meth:`prepare_scoring`);
    * :meth:`loss` takes :math:`K` negatives per positive (from :meth:`loader`), uniform or
      Bernoulli, optionally filtered, and any :mod:`~torch_mmkg.nn.loss`; 1-N training with
      inverse relations goes through :meth:`loss_1n` and :meth:`loader_1n`;
    * :meth:`test` is the filtered, both-sided protocol of the papers.

    Subclasses implement :meth:`entity` and :meth:`relation` (multi-modal models fuse their
    modalities there, and may override the scoring implementations :meth:`_forward`,
    :meth:`_score_tails`, :meth:`_score_heads` and :meth:`_loss_1n` when fusion depends on
    the query).

    Bad input fails early with a :class:`ValueError` that names the argument (see
    :mod:`torch_mmkg.nn.validation`): the constructor checks :obj:`num_nodes`,
    :obj:`num_relations` and :obj:`hidden_channels` (subclasses that compute anything
    before calling it check them first, with their own hyper-parameters), and the public
    entry points (:meth:`forward`, :meth:`score_tails`, :meth:`score_heads`, :meth:`loss`,
    :meth:`loss_1n`, :meth:`loader`, :meth:`loader_1n`, :meth:`random_sample`,
    :meth:`test`) check their index tensors, once, before dispatching to the unchecked
    implementations: integer dtypes only, entity ids in :math:`[0, N)`, relation ids in
    :math:`[0, R)`, or :math:`[0, 2R)` where inverse relations may be addressed directly
    (:meth:`forward`, :meth:`score_tails`, :meth:`loss_1n` of a model with inverse
    relations).

    Args:
        num_nodes (int): The number of entities :math:`N`.
        num_relations (int): The number of relations :math:`R`.
        hidden_channels (int): The embedding size :math:`d`.
        interaction (Interaction): The score function.
        loss (torch.nn.Module): The training loss (a
            :class:`~torch_mmkg.nn.loss.KGELoss` for negative sampling or a
            :class:`~torch_mmkg.nn.loss.BCELoss` for 1-N training).
        inverse_relations (bool, optional): Learn :math:`2R` relations, the second half
            being inverses, and predict heads as tails of the inverse relation.
            (default: :obj:`False`)
        regularization (str, optional): :obj:`None`, :obj:`"l2"` or :obj:`"n3"` penalty on
            the representations of each batch. (default: :obj:`None`)
        regularization_weight (float, optional): Its weight. (default: :obj:`0.0`)
    """
    #: Whether the default training regime is 1-N scoring (else negative sampling).
    one_to_n: bool = False
    #: Whether the model scores twins negatives (:class:`~torch_mmkg.loader.Negatives`):
    #: only models with separate structural and multi-modal embeddings whose score has
    #: unimodal and cross-modal terms (TBKGC, VBKGC) can.
    supports_twins: bool = False

    def __init__(self, num_nodes: int, num_relations: int, hidden_channels: int,
                 interaction: Interaction, loss: torch.nn.Module,
                 inverse_relations: bool = False, regularization: Optional[str] = None,
                 regularization_weight: float = 0.0):
        num_nodes, num_relations, hidden_channels = check_sizes(self, num_nodes, num_relations,
                                                                hidden_channels)
        choice(self, 'regularization', regularization, (None, 'l2', 'n3'))
        regularization_weight = real(self, 'regularization_weight', regularization_weight, 0.0)
        super().__init__()
        self.num_nodes = num_nodes
        self.num_relations = num_relations
        self.hidden_channels = hidden_channels
        self.inverse_relations = bool(inverse_relations)
        self.interaction = interaction
        self.loss_fn = loss
        self.regularization = regularization
        self.regularization_weight = regularization_weight

    @property
    def num_relation_embeddings(self) -> int:
        r"""Rows of the relation table: :math:`2R` with inverse relations, else :math:`R`."""
        return 2 * self.num_relations if self.inverse_relations else self.num_relations

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        raise NotImplementedError

    # Representations ##########################################################################

    def entity(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Entity representations :math:`[*, D_e]` of :obj:`index` (all entities if
        :obj:`None`)."""
        raise NotImplementedError

    def relation(self, rel_type: Tensor) -> Tensor:
        r"""Relation representations :math:`[*, D_r]`."""
        raise NotImplementedError

    def prepare_scoring(self) -> Any:
        r"""What :meth:`score_tails`/:meth:`score_heads` need for all entities, computed
        once per evaluation pass (by default the :obj:`[N, D_e]` entity representations)."""
        return self.entity(None)

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
        return self.interaction(self.entity(head_index), self.relation(rel_type),
                                self.entity(tail_index))

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
        cache = self.prepare_scoring() if cache is None else cache
        return self.interaction.score_tails(self.entity(head_index), self.relation(rel_type),
                                            cache)

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
        cache = self.prepare_scoring() if cache is None else cache
        return self.interaction.score_heads(cache, self.relation(rel_type),
                                            self.entity(tail_index))

    def score_negatives(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                        negatives: Negatives) -> Tuple[Tensor, Tensor]:
        r"""Scores of the positives :obj:`[B]` and their negatives :obj:`[B, K]`; each
        positive's query representation is computed once and broadcast against its
        :math:`K` candidates. With inverse relations, head corruptions are scored as
        :meth:`score_heads` scores them, as tails of the inverse relation: the positive as
        :math:`(t, r + R, h)` and its negatives as :math:`(t, r + R, e)`."""
        h, r, t = self.entity(head_index), self.relation(rel_type), self.entity(tail_index)
        pos = self.interaction(h, r, t)
        index, ch = negatives.index, negatives.corrupt_head
        ts, hs = (~ch).nonzero().view(-1), ch.nonzero().view(-1)
        parts, reg = [], [h, r, t]
        if ts.numel():  # (h, r, e) for the K candidate tails e of each positive
            parts.append(self.candidate_scores(h[ts], r[ts], index[ts], False, reg))
        if hs.numel() and self.inverse_relations:  # (t, r + R, e) for the K candidate heads
            r_inv = self.relation(rel_type[hs] + self.num_relations)
            reg.append(r_inv)
            pos = pos.index_put((hs, ), self.interaction(t[hs], r_inv, h[hs]))
            parts.append(self.candidate_scores(t[hs], r_inv, index[hs], False, reg))
        elif hs.numel():  # (e, r, t) for the K candidate heads
            parts.append(self.candidate_scores(t[hs], r[hs], index[hs], True, reg))
        neg = torch.empty_like(index, dtype=pos.dtype)
        neg[torch.cat([ts, hs])] = torch.cat(parts)
        self._reg_inputs = tuple(reg)
        return pos, neg

    def candidate_scores(self, anchor: Tensor, r: Tensor, index: Tensor, corrupt_head: bool,
                         reg: Optional[list] = None) -> Tensor:
        r"""Scores of :math:`(a_b, r_b, e)` (or :math:`(e, r_b, a_b)` if
        :obj:`corrupt_head`) for the :math:`K` candidates :obj:`index[b]` of each anchor
        :math:`a_b`; the candidates' representations are appended to :obj:`reg` for the
        penalty.

        Shapes:
            - **input:** :obj:`anchor` :math:`[b, D_e]`, :obj:`r` :math:`[b, D_r]`,
              :obj:`index` :math:`[b, K]`
            - **output:** :math:`[b, K]`
        """
        cand = self.entity(index)
        if reg is not None:
            reg.append(cand)
        score = compiled_forward(self.interaction, cand, cand.numel())
        if corrupt_head:
            return score(cand, r[:, None], anchor[:, None])
        return score(anchor[:, None], r[:, None], cand)

    def penalty(self, *representations: Tensor) -> Tensor:
        r"""The configured regularisation of the given representations."""
        if not self.regularization or not self.regularization_weight:
            return representations[0].new_zeros(())
        if self.regularization == 'l2':
            return l2_regularization(*representations, weight=self.regularization_weight)
        return n3_regularization(*representations, weight=self.regularization_weight,
                                 complex_=self.interaction.complex_entities)

    # Training #################################################################################

    def loss(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
             negatives: Optional[Negatives] = None) -> Tensor:
        r"""Returns the loss of a batch of positives and their negatives.

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
        if not isinstance(self.loss_fn, KGELoss):
            raise RuntimeError(f"{self.__class__.__name__} is trained 1-N with "
                               f"{self.loss_fn.__class__.__name__}; use loss_1n()/loader_1n()")
        specs = [self._entity_ids('head_index', head_index),
                 self._relation_ids('rel_type', rel_type),
                 self._entity_ids('tail_index', tail_index)]
        if negatives is not None:
            specs.append(self._entity_ids('negatives.index', negatives.index))
        checked = self._check('loss', *specs)
        head_index, rel_type, tail_index = checked[:3]
        if negatives is not None and checked[3] is not negatives.index:
            negatives = negatives._replace(index=checked[3])
        if negatives is None:
            negatives = NegativeSampler(self.num_nodes)(head_index, rel_type, tail_index)
        if negatives.twins and not self.supports_twins:
            raise ValueError(f"twins negative sampling needs a model with separate structural "
                             f"and multi-modal embeddings scored by unimodal and cross-modal "
                             f"terms (e.g. TBKGC, VBKGC); {self.__class__.__name__} has one "
                             f"entity representation")
        pos, neg = self.score_negatives(head_index, rel_type, tail_index, negatives)
        loss = self.loss_fn(pos, neg)
        reg = self.penalty(*self._reg_inputs)
        self._reg_inputs = None
        return loss + reg

    def loss_1n(self, entity_index: Tensor, rel_type: Tensor, target: Tensor) -> Tensor:
        r"""The 1-N loss of queries :math:`(e, r, ?)` against their :obj:`[B, N]` targets.

        Args:
            entity_index (torch.Tensor): The query entities :math:`[B]`, in :math:`[0, N)`.
            rel_type (torch.Tensor): The query relations :math:`[B]`, in :math:`[0, R)`
                (:math:`[0, 2R)` for a model with inverse relations).
            target (torch.Tensor): The :obj:`[B, N]` 0/1 targets.

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        entity_index, rel_type = self._check(
            'loss_1n', self._entity_ids('entity_index', entity_index),
            self._relation_ids('rel_type', rel_type, inverse=True))
        return self._loss_1n(entity_index, rel_type, target)

    def _loss_1n(self, entity_index: Tensor, rel_type: Tensor, target: Tensor) -> Tensor:
        r"""The loss of :meth:`loss_1n` for checked indices."""
        loss_fn = self.loss_fn if isinstance(self.loss_fn, BCELoss) else BCELoss(0.0)
        e, r = self.entity(entity_index), self.relation(rel_type)
        logits = self.interaction.score_tails(e, r, self.prepare_scoring())
        return loss_fn(logits, target) + self.penalty(e, r)

    def auxiliary_parameters(self) -> list:
        r"""Parameters trained by their own objective, :meth:`auxiliary_loss`, with their own
        optimiser, and excluded from the main one (e.g. MoMoK's CLUB estimators). None by
        default."""
        return []

    def auxiliary_loss(self) -> Optional[Tensor]:
        r"""The objective of :meth:`auxiliary_parameters` for the last training batch, to be
        minimised after each main step (:obj:`None`: nothing to do)."""
        return None

    def loader(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
               num_negatives: int = 0, strategy: str = 'uniform',
               known: Optional[KnownTriples] = None,
               generator: Optional[torch.Generator] = None, twins: bool = False,
               **kwargs) -> TripleLoader:
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
            **kwargs: :obj:`batch_size`, :obj:`shuffle`, :obj:`drop_last`.

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
                twins=twins)
        return TripleLoader(head_index, rel_type, tail_index, sampler=sampler,
                            generator=generator, **kwargs)

    def _head_probability(self, strategy, head_index, rel_type, tail_index):
        if strategy != 'bernoulli':
            return None
        return relation_head_probability(head_index, rel_type, tail_index, self.num_relations)

    def loader_1n(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                  **kwargs) -> OneToNLoader:
        r"""Returns a 1-N loader of :math:`(e, r, ?)` queries (with inverse queries when the
        model has inverse relations).

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
        return OneToNLoader(head_index, rel_type, tail_index, self.num_nodes,
                            self.num_relations, self.inverse_relations, **kwargs)

    @torch.no_grad()
    def random_sample(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
                      num_negatives: int = 1, strategy: str = 'uniform',
                      known: Optional[KnownTriples] = None,
                      generator: Optional[torch.Generator] = None
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

        Raises:
            ValueError: If an index tensor has a non-integer dtype or an id out of range.
        """
        head_index, rel_type, tail_index = self._check_triples('random_sample', head_index,
                                                               rel_type, tail_index)
        neg = NegativeSampler(
            self.num_nodes, num_negatives, strategy, known,
            self._head_probability(strategy, head_index, rel_type, tail_index),
            generator)(head_index, rel_type, tail_index)
        K = num_negatives
        h = head_index[:, None].expand(-1, K).clone()
        t = tail_index[:, None].expand(-1, K).clone()
        ch = neg.corrupt_head[:, None].expand(-1, K)
        h[ch] = neg.index[ch]
        t[~ch] = neg.index[~ch]
        return h.reshape(-1), rel_type[:, None].expand(-1, K).reshape(-1), t.reshape(-1)

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
        bytes; it is cached until a buffer changes (in place or replaced)."""
        buffers = []
        for prefix, module in self.named_modules():
            for name in sorted(module._non_persistent_buffers_set):
                buf = module._buffers.get(name)
                if buf is not None:
                    buffers.append((f'{prefix}.{name}' if prefix else name, buf))
        key = tuple((n, b.data_ptr(), b._version, str(b.device), tuple(b.shape), b.dtype)
                    for n, b in buffers)
        cached = getattr(self, '_fingerprint_cache', None)
        if cached is None or cached[0] != key:
            cached = (key, {n: _digest(b) for n, b in buffers})
            self._fingerprint_cache = cached
        return dict(cached[1])

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
        # A state dict of torch_mmkg 0.1 has no '_extra_state': load it without the check.
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
