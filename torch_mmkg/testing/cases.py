r"""Test templates in the style of PyKEEN's ``tests/cases.py``: base classes that hold the
tests every component of a kind must pass, subclassed once per component (or configuration)
with a few attributes,

.. code-block:: python

    from torch_mmkg.testing import InteractionCase

    class TestDistMult(InteractionCase):
        cls = DistMultInteraction

        def naive(self, h, r, t):
            return sum(float(h[k] * r[k] * t[k]) for k in range(h.numel()))

* :class:`InteractionCase`: an :class:`~torch_mmkg.nn.interactions.Interaction` against a
  naive per-triple transcription of its formula, broadcasting, 1-vs-all and candidate scoring
  (and their gradients);
* :class:`FusionCase`: a fusion of :data:`~torch_mmkg.nn.fusion.FUSIONS` against a naive
  transcription, masks (a missing slot never changes the result), relation dependence and
  its decomposition, the uniform :meth:`~torch_mmkg.nn.fusion.Fusion.build` signature,
  gradients;
* :class:`ModelCase`: a model of :data:`~torch_mmkg.nn.MODELS`: every scoring entry point
  agrees, every parameter gets a gradient, state-dict round trip, one
  :class:`~torch_mmkg.training.Trainer` epoch under each regime, device runs;
* :class:`RegimeCase`: a training regime of :data:`~torch_mmkg.nn.regimes.REGIMES` against a
  naive transcription of its loss, its default loss and the losses it refuses.

The template classes' names do not start with ``Test``: pytest collects only the subclasses.
Everything runs in float64 on tiny problems; :func:`missing_cases` lists the registered
components no subclass covers (for a meta-test).
"""
import copy
import itertools
import math
import warnings
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import pytest
import torch
from torch import Tensor

from torch_mmkg.testing import withCUDA

__all__ = ['InteractionCase', 'InteractionInputs', 'FusionCase', 'ModelCase', 'RegimeCase',
           'missing_cases', 'naive_kge_loss', 'naive_one_to_n_loss', 'DTYPE', 'ATOL']

DTYPE = torch.float64
#: The tolerance of float64 comparisons. Two computations of one formula that agree in exact
#: arithmetic (a matrix product against a loop, a fused kernel against a gather) differ by
#: rounding only: a few ulps of the O(1)-O(10) scores and losses of these tiny problems, about
#: 1e-15. 1e-9 leaves six orders of magnitude of room for summation order, and still catches
#: any wrong term, which moves a value by O(0.01) or more.
ATOL = 1e-9


def _close(actual: Tensor, expected: Tensor, atol: float, what: str):
    assert actual.shape == expected.shape, (f"{what}: shape {tuple(actual.shape)}, expected "
                                            f"{tuple(expected.shape)}")
    diff = (actual.detach() - expected.detach()).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    ok = torch.allclose(actual.detach(), expected.detach(), atol=atol, rtol=0)
    assert ok, f"{what}: differs by up to {worst:.3g} (atol {atol:g})"


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.3):
    r"""Adds noise to every parameter: zero initialisations (gates, temperatures) would hide
    a term that ignores them or reads the wrong one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.add_(scale * noise.to(p.dtype).to(p.device))


class _Case:
    #: Known failures: test names as pytest shows them (e.g.
    #: :obj:`"test_trainer_epoch[1-n]"`) and the reason, marked
    #: :obj:`xfail(strict=True)` (a fix makes them fail, to be removed).
    xfails: Dict[str, str] = {}

    @pytest.fixture(autouse=True)
    def _case_setup(self, request):
        r"""One thread (tiny problems run faster, and steadier on a loaded machine, on one),
        and the known failures of :attr:`xfails`."""
        reason = self.xfails.get(request.node.name)
        if reason is not None:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
        old = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(old)


# Interactions #################################################################################


class InteractionInputs(NamedTuple):
    r"""The inputs of the interaction tests: :math:`B` triples :obj:`(h, r, t)`, an entity
    :obj:`table` of :math:`N` rows, candidates :obj:`index` :math:`[B, K]` into it and a
    per-row :obj:`corrupt_head` (both values present); the slot masks of :obj:`h`, :obj:`t`
    and :obj:`table` for interactions that take them (else :obj:`None`)."""
    h: Tensor
    r: Tensor
    t: Tensor
    table: Tensor
    index: Tensor
    corrupt_head: Tensor
    h_mask: Optional[Tensor] = None
    t_mask: Optional[Tensor] = None
    table_mask: Optional[Tensor] = None


class InteractionCase(_Case):
    r"""The tests of an :class:`~torch_mmkg.nn.interactions.Interaction`.

    Subclasses set :attr:`cls` (and :attr:`kwargs`, or override :meth:`make`) and implement
    :meth:`naive`, the score of ONE triple of unbatched float64 tensors written out from the
    paper (a loop or an elementwise formula). Interactions with other inputs (multi-view
    stacks, ensembles with slot masks) override :meth:`make_inputs`, :meth:`entity_shape` or
    :meth:`relation_shape`. A test that does not apply is listed in :attr:`skips` with the
    reason.
    """
    #: The interaction class.
    cls: type = None
    #: Its constructor arguments.
    kwargs: Dict[str, Any] = {}
    #: The embedding size handed to :meth:`entity_width` and :meth:`relation_width`.
    dim: int = 4
    #: Queries, candidates per query, entities.
    B, K, N = 3, 4, 6
    seed: int = 0
    atol: float = ATOL
    #: Test names (without ``test_``) that do not apply, with the reason.
    skips: Dict[str, str] = {}

    def setup_method(self, method):
        self.interaction = self.make()

    def make(self) -> torch.nn.Module:
        r"""The interaction under test, float64, in eval mode."""
        torch.manual_seed(self.seed)
        return self.cls(**self.kwargs).to(DTYPE).eval()

    def naive(self, h: Tensor, r: Tensor, t: Tensor, **masks) -> float:
        r"""The score of one triple, transcribed naively (:obj:`self.interaction` holds the
        interaction, e.g. for its parameters); :obj:`masks` are :obj:`h_mask` and
        :obj:`t_mask` for interactions that take them."""
        raise NotImplementedError(f"{type(self).__name__} must implement naive(h, r, t)")

    def entity_shape(self) -> Tuple[int, ...]:
        return (self.interaction.entity_width(self.dim), )

    def relation_shape(self) -> Tuple[int, ...]:
        return (self.interaction.relation_width(self.dim), )

    def make_masks(self, n: int, gen: torch.Generator) -> Optional[Tensor]:
        r"""Slot masks :math:`[n, S]` of :obj:`n` entities for interactions that take them
        (:attr:`uses_masks`): random, with missing slots."""
        if not self.interaction.uses_masks:
            return None
        S = self.entity_shape()[0]
        return torch.rand(n, S, generator=gen) < 0.6

    def make_inputs(self, B: int, K: int, N: int) -> InteractionInputs:
        gen = torch.Generator().manual_seed(self.seed + 1)
        E, Rs = self.entity_shape(), self.relation_shape()

        def rand(*shape):
            return torch.randn(*shape, generator=gen, dtype=DTYPE)

        ch = torch.arange(B) % 2 == 0  # both corruption sides
        return InteractionInputs(rand(B, *E), rand(B, *Rs), rand(B, *E), rand(N, *E),
                                 torch.randint(0, N, (B, K), generator=gen), ch,
                                 self.make_masks(B, gen), self.make_masks(B, gen),
                                 self.make_masks(N, gen))

    def _skip(self, test: str):
        if test in self.skips:
            pytest.skip(self.skips[test])

    def _masks(self, h_mask, t_mask) -> Dict[str, Tensor]:
        if not self.interaction.uses_masks or h_mask is None:
            return {}
        return {'h_mask': h_mask, 't_mask': t_mask}

    def score(self, h, r, t, h_mask=None, t_mask=None) -> Tensor:
        r""":meth:`forward`, with the masks where the interaction takes them."""
        return self.interaction(h, r, t, **self._masks(h_mask, t_mask))

    def _loop(self, fn, B: int, K: Optional[int] = None) -> Tensor:
        if K is None:
            return torch.tensor([float(fn(b)) for b in range(B)], dtype=DTYPE)
        return torch.tensor([[float(fn(b, k)) for k in range(K)] for b in range(B)],
                            dtype=DTYPE)

    def _row(self, x: Optional[Tensor], i):
        return None if x is None else x[i]

    # The tests ################################################################################

    def test_naive(self):
        r""":meth:`forward` equals the naive transcription, triple by triple."""
        self._skip('naive')
        x = self.make_inputs(self.B, self.K, self.N)
        out = self.score(x.h, x.r, x.t, x.h_mask, x.t_mask)
        assert out.shape == (self.B, ) and out.dtype == DTYPE
        masks = [self._masks(self._row(x.h_mask, b), self._row(x.t_mask, b))
                 for b in range(self.B)]
        expected = self._loop(lambda b: self.naive(x.h[b], x.r[b], x.t[b], **masks[b]), self.B)
        _close(out, expected, self.atol, f"{self.cls.__name__}.forward vs naive")

    def test_broadcast(self):
        r""":obj:`[B, 1, *E]` against :obj:`[B, K, *E]` (candidate tails, candidate heads,
        candidates shared by the batch) equals scoring triple by triple."""
        self._skip('broadcast')
        B, K = self.B, self.K
        x = self.make_inputs(B, K, self.N)
        cand = x.table[x.index]  # [B, K, *E]
        cmask = None if x.table_mask is None else x.table_mask[x.index]
        hm = None if x.h_mask is None else x.h_mask[:, None]

        def one(h, r, t, h_mask, t_mask):  # one unbatched triple
            return self.score(h, r, t, h_mask, t_mask)

        out = self.score(x.h[:, None], x.r[:, None], cand, hm, cmask)
        assert out.shape == (B, K)
        exp = self._loop(lambda b, k: one(x.h[b], x.r[b], cand[b, k], self._row(x.h_mask, b),
                                          None if cmask is None else cmask[b, k]), B, K)
        _close(out, exp, self.atol, "candidate tails [B, 1] x [B, K]")
        out = self.score(cand, x.r[:, None], x.h[:, None], cmask, hm)
        exp = self._loop(lambda b, k: one(cand[b, k], x.r[b], x.h[b],
                                          None if cmask is None else cmask[b, k],
                                          self._row(x.h_mask, b)), B, K)
        _close(out, exp, self.atol, "candidate heads [B, K] x [B, 1]")
        shared, smask = x.table[None, :K], None if x.table_mask is None else x.table_mask[None, :K]
        out = self.score(x.h[:, None], x.r[:, None], shared, hm, smask)
        exp = self._loop(lambda b, k: one(x.h[b], x.r[b], x.table[k], self._row(x.h_mask, b),
                                          self._row(x.table_mask, k)), B, K)
        _close(out, exp, self.atol, "shared candidates [B, 1] x [1, K]")

    def _all(self, x: InteractionInputs, tails: bool, h=None, r=None, table=None) -> Tensor:
        h, r, table = (x.h if h is None else h), (x.r if r is None else r), (
            x.table if table is None else table)
        cands = self.interaction.prepare_candidates(table, x.table_mask)
        if tails:
            return self.interaction.score_tails(h, r, cands,
                                                **self._masks(x.h_mask, x.table_mask))
        return self.interaction.score_heads(cands, r, h, **self._masks(x.table_mask, x.h_mask))

    def _all_expected(self, x: InteractionInputs, tails: bool) -> Tensor:
        def fn(b, n):
            e, em = x.table[n], self._row(x.table_mask, n)
            q, qm = x.h[b], self._row(x.h_mask, b)
            return (self.score(q, x.r[b], e, qm, em) if tails else
                    self.score(e, x.r[b], q, em, qm))
        return self._loop(fn, self.B, self.N)

    def test_score_tails(self):
        r""":meth:`score_tails` (1-vs-all) equals :meth:`forward` on every entity."""
        self._skip('score_tails')
        x = self.make_inputs(self.B, self.K, self.N)
        out = self._all(x, tails=True)
        assert out.shape == (self.B, self.N) and out.dtype == DTYPE
        _close(out, self._all_expected(x, tails=True), self.atol, "score_tails vs forward")

    def test_score_heads(self):
        r""":meth:`score_heads` (1-vs-all) equals :meth:`forward` on every entity."""
        self._skip('score_heads')
        x = self.make_inputs(self.B, self.K, self.N)
        out = self._all(x, tails=False)
        assert out.shape == (self.B, self.N) and out.dtype == DTYPE
        _close(out, self._all_expected(x, tails=False), self.atol, "score_heads vs forward")

    def test_masked_views_never_matter(self):
        r"""For an interaction that takes slot masks, a missing view (of the query or a
        candidate) never changes a score: garbage there leaves :meth:`forward` and
        :meth:`score_tails` bit-identical."""
        self._skip('masked_views_never_matter')
        if not self.interaction.uses_masks:
            pytest.skip(f"{type(self.interaction).__name__} takes no slot masks")
        x = self.make_inputs(self.B, self.K, self.N)
        gen = torch.Generator().manual_seed(self.seed + 4)

        def spoil(e, mask):
            noise = 1e30 * torch.randn(e.shape, generator=gen, dtype=DTYPE)
            return torch.where(mask[..., None], e, noise)

        bad = x._replace(h=spoil(x.h, x.h_mask), t=spoil(x.t, x.t_mask),
                         table=spoil(x.table, x.table_mask))
        assert torch.equal(self.score(bad.h, x.r, bad.t, x.h_mask, x.t_mask),
                           self.score(x.h, x.r, x.t, x.h_mask, x.t_mask)), \
            "a missing view changed forward"
        assert torch.equal(self._all(bad, tails=True), self._all(x, tails=True)), \
            "a missing view changed score_tails"

    def _gathered_expected(self, x: InteractionInputs, ch) -> Tensor:
        cand = x.table[x.index]
        flags = ch if isinstance(ch, Tensor) else torch.full((self.B, ), bool(ch))
        return self._loop(lambda b, k: (
            self.interaction(cand[b, k], x.r[b], x.h[b]) if flags[b] else
            self.interaction(x.h[b], x.r[b], cand[b, k])), self.B, self.K)

    def test_score_gathered(self):
        r""":meth:`score_gathered` equals :meth:`forward` on the gathered candidates, for
        candidate tails, candidate heads and a per-row :obj:`corrupt_head`."""
        self._skip('score_gathered')
        x = self.make_inputs(self.B, self.K, self.N)
        cand = x.table[x.index]
        for ch in (False, True, x.corrupt_head):
            out = self.interaction.score_gathered(x.h, x.r, cand, ch)
            _close(out, self._gathered_expected(x, ch), self.atol,
                   f"score_gathered(corrupt_head={ch}) vs forward")

    def test_score_candidates(self):
        r""":meth:`score_candidates` (a fused gather-and-score kernel where the interaction
        has one) equals :meth:`forward` on the gathered candidates."""
        self._skip('score_candidates')
        x = self.make_inputs(self.B, self.K, self.N)
        for ch in (False, True, x.corrupt_head):
            out = self.interaction.score_candidates(x.h, x.r, x.table, x.index, ch)
            _close(out, self._gathered_expected(x, ch), self.atol,
                   f"score_candidates(corrupt_head={ch}) vs forward")

    def test_score_weighted_candidates(self):
        r""":meth:`score_weighted_candidates` equals :meth:`forward` on the weighted sums of
        the gathered basis rows."""
        self._skip('score_weighted_candidates')
        if len(self.entity_shape()) != 1:
            pytest.skip("a relation-dependent fusion of multi-view entities is computed per "
                        "(entity, relation), never as a weighted basis")
        x = self.make_inputs(self.B, self.K, self.N)
        gen = torch.Generator().manual_seed(self.seed + 2)
        P = 3
        basis = torch.randn(self.N, P, *self.entity_shape(), generator=gen, dtype=DTYPE)
        w = torch.rand(self.B, self.K, P, generator=gen, dtype=DTYPE)
        for ch in (False, True, x.corrupt_head):
            out = self.interaction.score_weighted_candidates(x.h, x.r, basis, w, x.index, ch)
            flags = ch if isinstance(ch, Tensor) else torch.full((self.B, ), bool(ch))

            def fn(b, k):
                c = sum(w[b, k, p] * basis[x.index[b, k], p] for p in range(P))
                return (self.interaction(c, x.r[b], x.h[b]) if flags[b] else
                        self.interaction(x.h[b], x.r[b], c))
            _close(out, self._loop(fn, self.B, self.K), self.atol,
                   f"score_weighted_candidates(corrupt_head={ch}) vs forward")

    def _grads(self, fn, *inputs: Tensor) -> List[Tensor]:
        leaves = [i.detach().clone().requires_grad_(True) for i in inputs]
        out = fn(*leaves)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                             dtype=DTYPE)
        grads = torch.autograd.grad((out * weight).sum(), leaves, allow_unused=True)
        return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]

    def test_gradients(self):
        r"""The gradients of :meth:`score_tails`, :meth:`score_heads` and
        :meth:`score_candidates` with respect to the queries, relations and entity table
        equal those of :meth:`forward` broadcast over the same triples (training 1-N and
        negative sampling differentiate through them)."""
        self._skip('gradients')
        x = self.make_inputs(self.B, self.K, self.N)
        masks_t = self._masks(None if x.h_mask is None else x.h_mask[:, None],
                              None if x.table_mask is None else x.table_mask[None])
        checks = [('score_tails',
                   lambda h, r, e: self._all(x, True, h, r, e),
                   lambda h, r, e: self.interaction(h[:, None], r[:, None], e[None],
                                                    **masks_t))]
        if 'score_heads' not in self.skips:
            masks_h = {k: v for k, v in zip(('t_mask', 'h_mask'), masks_t.values())}
            checks.append(('score_heads',
                           lambda h, r, e: self._all(x, False, h, r, e),
                           lambda h, r, e: self.interaction(e[None], r[:, None], h[:, None],
                                                            **masks_h)))
        if 'score_candidates' not in self.skips:
            ch = x.corrupt_head.view(-1, *[1] * len(self.entity_shape()))[:, None]

            def via_forward(h, r, e):
                cand = e[x.index]
                a = h[:, None].expand_as(cand)
                return self.interaction(torch.where(ch, cand, a), r[:, None],
                                        torch.where(ch, a, cand))
            checks.append(('score_candidates',
                           lambda h, r, e: self.interaction.score_candidates(
                               h, r, e, x.index, x.corrupt_head), via_forward))
        for what, fn, ref in checks:
            got = self._grads(fn, x.h, x.r, x.table)
            want = self._grads(ref, x.h, x.r, x.table)
            for name, g, w in zip(('queries', 'relations', 'entities'), got, want):
                _close(g, w, self.atol, f"gradient of {what} w.r.t. the {name}")


# Fusions ######################################################################################


class FusionCase(_Case):
    r"""The tests of a fusion of :data:`~torch_mmkg.nn.fusion.FUSIONS`.

    Subclasses set :attr:`name` (and :attr:`kwargs` of
    :meth:`~torch_mmkg.nn.fusion.Fusion.build`) and implement :meth:`naive`; the stack's
    masks come from :meth:`make_mask` (override it where a slot is always present by
    construction).
    """
    #: The registry name (an alias works too).
    name: str = None
    #: Extra arguments of :meth:`Fusion.build`.
    kwargs: Dict[str, Any] = {}
    channels: int = 4
    num_slots: int = 3
    num_relations: int = 3
    #: Rows of the test stacks.
    B: int = 10
    seed: int = 0
    atol: float = ATOL
    #: Parameters that get no gradient by design, with the reason.
    unused_parameters: Dict[str, str] = {}
    #: What a masked slot is replaced by in :meth:`test_masked_slots_never_matter`: noise,
    #: and large values of both signs.
    garbage: Sequence[float] = (10.0, 1e30, -1e30, 1e200)

    def setup_method(self, method):
        self.fusion = self.make()

    @property
    def cls(self) -> type:
        from torch_mmkg.nn.fusion import FUSIONS
        return FUSIONS[self.name]

    def make(self, mask_missing: bool = True):
        r"""The fusion built by the uniform signature, float64, eval mode, with perturbed
        parameters."""
        torch.manual_seed(self.seed)
        fusion = self.cls.build(self.channels, self.num_slots, self.num_relations, mask_missing,
                                **self.kwargs)
        fusion = fusion.to(DTYPE).eval()
        _perturb(fusion, self.seed)
        return fusion

    def make_mask(self, B: int, gen: torch.Generator) -> Tensor:
        r"""Masks :math:`[B, S]`, the rows cycling through every pattern of missing slots
        (from all present to none present)."""
        S = self.num_slots
        patterns = torch.tensor(list(itertools.product([True, False], repeat=S)))
        return patterns[torch.arange(B) % patterns.size(0)]

    def make_inputs(self) -> Tuple[Tensor, Tensor, Tensor]:
        r"""A stack :math:`[B, S, D]`, its mask :math:`[B, S]` and relations :math:`[B]`."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        stack = torch.randn(self.B, self.num_slots, self.channels, generator=gen, dtype=DTYPE)
        rel = torch.randint(0, self.num_relations, (self.B, ), generator=gen)
        return stack, self.make_mask(self.B, gen), rel

    def naive(self, stack: Tensor, mask: Tensor, rel: Tensor) -> Tensor:
        r"""The joint representations :math:`[B, D']` of the rows of :obj:`stack`, row by row
        (:obj:`self.fusion` holds the fusion)."""
        raise NotImplementedError(f"{type(self).__name__} must implement naive(stack, mask, "
                                  f"rel)")

    def fuse(self, stack, mask, rel, fusion=None):
        return (fusion or self.fusion)(stack, mask, rel)

    # The tests ################################################################################

    def test_output_shape(self):
        r"""The joint representation is :math:`[*, D']` (:meth:`output_width`) for any
        leading dimensions, relations broadcast against them."""
        stack, mask, rel = self.make_inputs()
        width = self.fusion.output_width(self.channels)
        joint, weights = self.fuse(stack, mask, rel)
        assert joint.shape == (self.B, width) and joint.dtype == DTYPE
        assert weights is None or weights.shape[0] == self.B
        # Two leading dimensions, the relations broadcast over the first.
        stack2 = torch.stack([stack, stack.flip(0)])
        mask2 = torch.stack([mask, mask.flip(0)])
        joint2, _ = self.fuse(stack2, mask2, rel)
        assert joint2.shape == (2, self.B, width)
        _close(joint2[0], joint, self.atol, "the first of two leading dimensions")
        _close(joint2[1], self.fuse(stack.flip(0), mask.flip(0), rel)[0], self.atol,
               "the second of two leading dimensions")

    def test_naive(self):
        r""":meth:`forward` equals the naive transcription, row by row."""
        stack, mask, rel = self.make_inputs()
        _close(self.fuse(stack, mask, rel)[0], self.naive(stack, mask, rel), self.atol,
               f"{type(self.fusion).__name__} vs naive")

    def test_no_mask_is_all_present(self):
        r"""Without a mask every slot counts."""
        stack, mask, rel = self.make_inputs()
        _close(self.fuse(stack, None, rel)[0],
               self.fuse(stack, torch.ones_like(mask), rel)[0], self.atol,
               "mask=None vs an all-True mask")

    def test_masked_slots_never_matter(self):
        r"""A missing slot (mask False) never changes the output: replacing its values by
        garbage, large values included, leaves the joint representation and the weights
        bit-identical, and no gradient reaches it."""
        stack, mask, rel = self.make_inputs()
        assert (~mask).any()
        joint, weights = self.fuse(stack, mask, rel)
        gen = torch.Generator().manual_seed(self.seed + 5)
        for g in self.garbage:
            noise = g * torch.randn(stack.shape, generator=gen, dtype=DTYPE)
            bad = torch.where(mask[..., None], stack, noise)
            j2, w2 = self.fuse(bad, mask, rel)
            assert torch.equal(j2, joint), (f"a masked slot of value ~{g:g} changed the joint "
                                            f"representation (rows "
                                            f"{(j2 != joint).any(-1).nonzero().view(-1).tolist()})")
            assert (w2 is None) == (weights is None)
            assert w2 is None or torch.equal(w2, weights), (f"a masked slot of value ~{g:g} "
                                                            f"changed the weights")
        leaf = stack.clone().requires_grad_(True)
        out = self.fuse(leaf, mask, rel)[0]
        (out * torch.randn(out.shape, generator=gen, dtype=DTYPE)).sum().backward()
        assert (leaf.grad[~mask] == 0).all(), "a gradient reaches a masked slot"
        assert leaf.grad[mask].abs().sum() > 0

    def test_relation(self):
        r"""A relation-dependent fusion depends on the relation, and where it is
        :attr:`decomposable`, :meth:`combine` of the gathered basis rows and their
        :meth:`mix` equals :meth:`forward`; a relation-free fusion ignores the relation and
        its basis is its output."""
        from torch_mmkg.nn.fusion import Fusion
        stack, mask, rel = self.make_inputs()
        fusion = self.fusion
        joint = self.fuse(stack, mask, rel)[0]
        other = self.fuse(stack, mask, (rel + 1) % self.num_relations)[0]
        if not fusion.relation_dependent:
            assert torch.equal(other, joint), "a relation-free fusion depends on the relation"
            basis, _ = fusion.decompose(stack, mask)
            _close(basis[..., 0, :], joint, self.atol, "the basis of a relation-free fusion")
            return
        assert not torch.allclose(other, joint, atol=1e-6), \
            "a relation-dependent fusion gives the same output under every relation"
        if not fusion.decomposable:
            pytest.skip(f"{type(fusion).__name__} does not decompose")
        basis, state = fusion.decompose(stack, mask)
        gen = torch.Generator().manual_seed(self.seed + 6)
        rows = torch.randint(0, self.B, (self.B, 3), generator=gen)  # repeated rows
        rels = torch.randint(0, self.num_relations, (self.B, 3), generator=gen)
        got = Fusion.combine(basis[rows], fusion.mix(_take_state(state, rows), rels))
        want = self.fuse(stack[rows], mask[rows], rels)[0]
        _close(got, want, self.atol, "combine(basis[rows], mix(state[rows], rel)) vs forward")
        # One relation per query row broadcast over its candidates, as the models mix.
        got = Fusion.combine(basis[rows], fusion.mix(_take_state(state, rows), rel[:, None]))
        want = self.fuse(stack[rows], mask[rows], rel[:, None].expand(-1, 3))[0]
        _close(got, want, self.atol, "mix with relations broadcast over candidates")

    def test_build(self):
        r""":meth:`build` takes the uniform signature :obj:`(channels, num_slots,
        num_relations, mask_missing, **kwargs)`, positionally or by keyword; without
        relations it builds a relation-free fusion or refuses with a :class:`ValueError`."""
        from torch_mmkg.nn.fusion import Fusion
        cls = self.cls
        for fusion in (cls.build(self.channels, self.num_slots, self.num_relations, False,
                                 **self.kwargs),
                       cls.build(channels=self.channels, num_slots=self.num_slots,
                                 num_relations=self.num_relations, mask_missing=True,
                                 **self.kwargs)):
            assert isinstance(fusion, Fusion)
            assert isinstance(fusion.output_width(self.channels), int)
        try:
            free = cls.build(self.channels, self.num_slots, **self.kwargs)
        except ValueError as e:
            assert 'num_relations' in str(e), f"the refusal does not name num_relations: {e}"
        else:
            assert not free.relation_dependent, "built without relations, yet depends on them"
            stack, mask, _ = self.make_inputs()
            assert free.to(DTYPE)(stack, mask)[0].shape[:-1] == (self.B, )

    def test_gradients(self):
        r"""Every parameter (but the :attr:`unused_parameters`) gets a gradient."""
        if not list(self.fusion.parameters()):
            pytest.skip(f"{type(self.fusion).__name__} has no parameters")
        stack, mask, rel = self.make_inputs()
        joint, _ = self.fuse(stack, mask, rel)
        gen = torch.Generator().manual_seed(self.seed + 7)
        (joint * torch.randn(joint.shape, generator=gen, dtype=DTYPE)).sum().backward()
        missing = [n for n, p in self.fusion.named_parameters()
                   if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert sorted(missing) == sorted(self.unused_parameters), \
            f"parameters without a gradient: {missing}"


def _take_state(state: Any, index: Tensor) -> Any:
    if isinstance(state, Tensor):
        return state[index]
    if isinstance(state, (tuple, list)):
        return type(state)(_take_state(s, index) for s in state)
    return state


# Models #######################################################################################


class ModelCase(_Case):
    r"""The tests of a model of :data:`~torch_mmkg.nn.MODELS`.

    Subclasses set :attr:`name` (and :attr:`kwargs`), and :attr:`multimodal` for models
    built on modality features (two modalities with holes here; :meth:`from_data` of a
    :class:`~torch_mmkg.datasets.FakeMMKGDataset` in the training test).
    """
    #: The registry name.
    name: str = None
    kwargs: Dict[str, Any] = {}
    #: Whether the constructor takes :obj:`features` and :obj:`masks`.
    multimodal: bool = False
    num_nodes: int = 20
    num_relations: int = 3
    channels: int = 4
    #: Triples scored, negatives per triple.
    num_triples: int = 10
    num_negatives: int = 4
    seed: int = 0
    atol: float = ATOL

    @property
    def cls(self) -> type:
        from torch_mmkg.nn import MODELS
        return MODELS[self.name]

    def make_features(self) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        r"""Two modalities of different widths with holes (the same for every seed)."""
        return _features(self.num_nodes)

    def make_model(self, seed: Optional[int] = None, perturb: bool = True, **kwargs):
        r"""The model, float64, with perturbed parameters (so that zero-initialised gates
        matter)."""
        seed = self.seed if seed is None else seed
        kwargs = {**self.kwargs, **kwargs}
        torch.manual_seed(seed)
        if self.multimodal:
            features, masks = self.make_features()
            kwargs.update(features=features, masks=masks)
        model = self.cls(self.num_nodes, self.num_relations, self.channels, **kwargs)
        model = model.to(DTYPE)
        if perturb:
            _perturb(model, seed + 100, 0.1)
        return model

    def triples(self, seed: int = 0, num: Optional[int] = None):
        gen = torch.Generator().manual_seed(seed)
        num = num or self.num_triples
        return (torch.randint(0, self.num_nodes, (num, ), generator=gen),
                torch.randint(0, self.num_relations, (num, ), generator=gen),
                torch.randint(0, self.num_nodes, (num, ), generator=gen))

    def negatives(self, h, r, t, seed: int = 0):
        r"""Negatives drawn on the CPU (the same whatever the device of the triples, so that
        :meth:`test_device` compares like with like), on the device of :obj:`h`."""
        from torch_mmkg.loader import NegativeSampler
        neg = NegativeSampler(self.num_nodes, self.num_negatives,
                              generator=torch.Generator().manual_seed(seed))(
                                  h.cpu(), r.cpu(), t.cpu())
        assert neg.corrupt_head.any() and (~neg.corrupt_head).any(), "pick another seed"
        return neg._replace(index=neg.index.to(h.device),
                            corrupt_head=neg.corrupt_head.to(h.device))

    def _main_parameters(self, model) -> List[Tuple[str, torch.nn.Parameter]]:
        aux = {id(p) for p in model.auxiliary_parameters()}
        return [(n, p) for n, p in model.named_parameters() if id(p) not in aux]

    def expected_scores(self, model, h, r, t, neg) -> Tuple[Tensor, Tensor]:
        r"""The positive and negative scores :meth:`score_negatives` must give, from
        :meth:`forward`: head corruptions as tails of the inverse relation where the model
        has inverse relations."""
        cand, ch = neg.index, neg.corrupt_head
        if model.inverse_relations:
            R = model.num_relations
            pos = torch.where(ch, model(t, r + R, h), model(h, r, t))
            neg_s = torch.where(ch[:, None], model(t[:, None], (r + R)[:, None], cand),
                                model(h[:, None], r[:, None], cand))
            return pos, neg_s
        hh = torch.where(ch[:, None], cand, h[:, None])
        tt = torch.where(ch[:, None], t[:, None], cand)
        return model(h, r, t), model(hh, r[:, None], tt)

    def all_scores(self, model, h, r, t) -> Dict[str, Tensor]:
        with torch.no_grad():
            out = {'forward': model(h, r, t), 'score_tails': model.score_tails(h, r),
                   'score_heads': model.score_heads(r, t)}
            neg = self.negatives(h, r, t)
            out['positives'], out['negatives'] = model.score_negatives(h, r, t, neg)
        return out

    # The tests ################################################################################

    def test_scoring_agrees(self):
        r""":meth:`forward` = rows of :meth:`score_tails` (with and without a prepared
        cache) = rows of :meth:`score_heads` (tails of the inverse relation where the model
        has inverse relations) = :meth:`score_negatives`, on every entity."""
        model = self.make_model().eval()
        h, r, t = self.triples()
        N, R, B = self.num_nodes, self.num_relations, h.numel()
        rows, every = torch.arange(B), torch.arange(N)
        with torch.no_grad():
            score = model(h, r, t)
            assert score.shape == (B, ) and score.dtype == DTYPE
            assert torch.isfinite(score).all()
            tails = model.score_tails(h, r)
            _close(tails[rows, t], score, self.atol, "score_tails rows vs forward")
            _close(tails, model(h[:, None], r[:, None], every[None]), self.atol,
                   "score_tails vs forward on every entity")
            _close(model.score_tails(h, r, model.prepare_scoring()), tails, self.atol,
                   "score_tails with a prepared cache")
            heads = model.score_heads(r, t)
            if model.inverse_relations:
                _close(heads, model.score_tails(t, r + R), self.atol,
                       "score_heads vs score_tails of the inverse relation")
                _close(heads, model(t[:, None], (r + R)[:, None], every[None]), self.atol,
                       "score_heads vs forward (t, r + R, e) on every entity")
            else:
                _close(heads[rows, h], score, self.atol, "score_heads rows vs forward")
                _close(heads, model(every[None], r[:, None], t[:, None]), self.atol,
                       "score_heads vs forward on every entity")
            neg = self.negatives(h, r, t)
            pos, scores = model.score_negatives(h, r, t, neg)
            want_pos, want_neg = self.expected_scores(model, h, r, t, neg)
            _close(pos, want_pos, self.atol, "score_negatives positives vs forward")
            _close(scores, want_neg, self.atol, "score_negatives candidates vs forward")

    def test_per_negative_sides_agree(self):
        r""":meth:`score_negatives` of negatives whose side is drawn per negative
        (:obj:`NegativeSampler(side_per="negative")`: one positive's negatives mix head and
        tail corruptions) = :meth:`forward` on each negative triple, one by one (a head
        corruption as a tail of the inverse relation where the model has inverse relations);
        the positives are scored as :math:`(h, r, t)`. A :meth:`loss` of such a batch is
        finite and reaches every parameter."""
        from torch_mmkg.loader import NegativeSampler
        model = self.make_model().eval()
        h, r, t = self.triples(3)
        K, R = 2 * self.num_negatives, self.num_relations
        neg = NegativeSampler(self.num_nodes, K, generator=torch.Generator().manual_seed(3),
                              side_per='negative')(h, r, t)
        ch = neg.corrupt_head
        assert ch.shape == (h.numel(), K)
        assert bool((ch.any(1) & (~ch).any(1)).any()), "pick another seed"
        with torch.no_grad():
            pos, scores = model.score_negatives(h, r, t, neg)
            want = torch.empty_like(scores)
            for b, k in itertools.product(range(h.numel()), range(K)):
                hb, rb, tb, e = (x.view(1) for x in (h[b], r[b], t[b], neg.index[b, k]))
                if not bool(ch[b, k]):
                    want[b, k] = model(hb, rb, e)[0]
                elif model.inverse_relations:
                    want[b, k] = model(tb, rb + R, e)[0]
                else:
                    want[b, k] = model(e, rb, tb)[0]
            _close(pos, model(h, r, t), self.atol, "per-negative sides: positives vs forward")
            _close(scores, want, self.atol, "per-negative sides: negatives vs forward")
        model.train()
        loss = model.loss(h, r, t, neg)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        missing = [n for n, p in self._main_parameters(model)
                   if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing, f"parameters without a gradient from loss(): {missing}"

    def test_every_parameter_gets_a_gradient(self):
        r"""One negative-sampling :meth:`loss` gives every parameter (but the
        :meth:`auxiliary_parameters`) a finite, non-zero gradient."""
        model = self.make_model().train()
        h, r, t = self.triples(1)
        loss = model.loss(h, r, t, self.negatives(h, r, t, 1))
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        missing = [n for n, p in self._main_parameters(model)
                   if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing, f"parameters without a gradient from loss(): {missing}"
        bad = [n for n, p in self._main_parameters(model) if not torch.isfinite(p.grad).all()]
        assert not bad, f"non-finite gradients: {bad}"

    def test_terms_under_both_regimes(self):
        r"""The extra loss terms of a batch (penalty, alignment, CLUB, ...) are the same
        under negative sampling (:meth:`score_batch`) and 1-N (:meth:`score_queries`): every
        model trains under either regime with its whole objective."""
        model = self.make_model().train()
        h, r, t = self.triples(5)
        ns = model.score_batch(h, r, t, self.negatives(h, r, t, 5)).terms
        one_to_n = model.score_queries(h, r).terms
        assert sorted(ns) == sorted(one_to_n), (f"terms under negative sampling {sorted(ns)}, "
                                                f"under 1-N {sorted(one_to_n)}")
        for key, value in list(ns.items()) + list(one_to_n.items()):
            assert value.dim() == 0 and torch.isfinite(value), key

    def test_auxiliary_loss(self):
        r""":meth:`auxiliary_loss` on a batch's entities gives every auxiliary parameter a
        gradient, and no other parameter."""
        model = self.make_model().train()
        aux = list(model.auxiliary_parameters())
        if not aux:
            assert model.auxiliary_loss(torch.arange(3)) is None
            pytest.skip(f"{self.cls.__name__} has no auxiliary parameters")
        h, _, _ = self.triples(2)
        loss = model.auxiliary_loss(h)
        assert loss is not None and loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        names = {id(p): n for n, p in model.named_parameters()}
        missing = [names[id(p)] for p in aux if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing, f"auxiliary parameters without a gradient: {missing}"
        leaked = [n for n, p in self._main_parameters(model)
                  if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        assert not leaked, f"auxiliary_loss reaches main parameters: {leaked}"

    def test_state_dict_round_trip(self):
        r"""A model built with another seed scores like the saved one once it has loaded its
        state dict (without a feature-mismatch warning)."""
        from torch_mmkg.nn import FeatureMismatchWarning
        a, b = self.make_model(0).eval(), self.make_model(1).eval()
        h, r, t = self.triples(3)
        before = self.all_scores(b, h, r, t)
        want = self.all_scores(a, h, r, t)
        assert not torch.allclose(before['forward'], want['forward']), \
            "two seeds give the same scores: the round trip would prove nothing"
        with warnings.catch_warnings():
            warnings.simplefilter('error', FeatureMismatchWarning)
            b.load_state_dict(a.state_dict())
        got = self.all_scores(b, h, r, t)
        for key in want:
            assert torch.equal(got[key], want[key]), f"{key} differs after load_state_dict"

    def make_data(self):
        return _fake_data()

    def build_from_data(self, data, seed: int = 0):
        r"""The model for :obj:`data`: :meth:`from_data` for multi-modal models, the plain
        constructor otherwise."""
        from torch_mmkg.data import ENTITY
        torch.manual_seed(seed)
        if self.multimodal:
            return self.cls.from_data(data, self.channels, **self.kwargs)
        return self.cls(data[ENTITY].num_nodes, data.num_relations, self.channels,
                        **self.kwargs)

    @pytest.mark.parametrize('regime', ['negative_sampling', '1-n'])
    def test_trainer_epoch(self, regime):
        r"""One :class:`~torch_mmkg.training.Trainer` epoch under the regime: a finite loss,
        every parameter changed (the auxiliary ones as a whole: a small auxiliary ReLU
        network may have a unit dead on a tiny graph's entities)."""
        from torch_mmkg.training import TrainConfig, Trainer
        data = self.make_data()
        model = self.build_from_data(data)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        cfg = TrainConfig(regime=regime, epochs=1, eval_every=1, batch_size=32,
                          num_negatives=4, progress=False, test=False, seed=0)
        trainer = Trainer(model, data, cfg)
        result = trainer.fit()
        losses = [h_['loss'] for h_ in result['history']]
        assert len(losses) == 1 and math.isfinite(losses[0]), f"losses: {losses}"
        unchanged = [n for n, p in self._main_parameters(trainer.model)
                     if torch.equal(p.detach(), before[n])]
        assert not unchanged, f"parameters unchanged by an epoch under {regime}: {unchanged}"
        aux = {id(p) for p in trainer.model.auxiliary_parameters()}
        if aux:
            assert any(not torch.equal(p.detach(), before[n])
                       for n, p in trainer.model.named_parameters() if id(p) in aux), \
                f"no auxiliary parameter changed under {regime}"

    @withCUDA
    def test_device(self, device):
        r"""On the device the model scores as on the CPU."""
        if device.type == 'cpu':
            pytest.skip("the CPU is the reference device")
        model = self.make_model().eval()
        h, r, t = self.triples(4)
        want = self.all_scores(model, h, r, t)
        moved = copy.deepcopy(model).to(device)
        got = self.all_scores(moved, h.to(device), r.to(device), t.to(device))
        for key in want:
            _close(got[key].cpu(), want[key], self.atol, f"{key} on {device}")


def _features(N: int) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(1234)
    features = {'image': torch.randn(N, 6, generator=gen),
                'text': torch.randn(N, 5, generator=gen)}
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 4 != 1}
    return features, masks


_FAKE_DATA = {}


def _fake_data():
    r"""A tiny :class:`~torch_mmkg.datasets.FakeMMKGDataset` graph (20 entities, 3
    relations), built once."""
    if 'data' not in _FAKE_DATA:
        from torch_mmkg.datasets.fake import FakeMMKGDataset
        _FAKE_DATA['data'] = FakeMMKGDataset(num_entities=20, num_relations=3, num_clusters=4,
                                             num_triples=120, modalities={'image': 6,
                                                                          'text': 5},
                                             seed=0)[0]
    return copy.copy(_FAKE_DATA['data'])


# Regimes ######################################################################################


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _log_sigmoid(x: float) -> float:
    return -_softplus(-x)


def naive_kge_loss(loss_fn: torch.nn.Module, pos: Tensor, neg: Tensor) -> float:
    r"""The negative-sampling losses of :mod:`torch_mmkg.nn.loss` written out element by
    element from their formulas (:class:`SoftplusLoss`, :class:`MarginRankingLoss`,
    :class:`SelfAdversarialLoss`)."""
    from torch_mmkg.nn.loss import MarginRankingLoss, SelfAdversarialLoss, SoftplusLoss
    P, Q = pos.tolist(), neg.tolist()
    B, K = len(Q), len(Q[0])
    if isinstance(loss_fn, SoftplusLoss):
        return 0.5 * (sum(_softplus(-p) for p in P) / B +
                      sum(_softplus(q) for row in Q for q in row) / (B * K))
    if isinstance(loss_fn, MarginRankingLoss):
        m = loss_fn.margin
        if loss_fn.aggregate == 'mean':
            return sum(max(0.0, m - p + sum(row) / K) for p, row in zip(P, Q)) / B
        return sum(max(0.0, m - p + q) for p, row in zip(P, Q) for q in row) / (B * K)
    if isinstance(loss_fn, SelfAdversarialLoss):
        a, total = loss_fn.temperature, 0.0
        for p, row in zip(P, Q):
            top = max(a * q for q in row)
            e = [math.exp(a * q - top) for q in row]
            w = [x / sum(e) for x in e]
            total += 0.5 * (-_log_sigmoid(p) - sum(wi * _log_sigmoid(-q)
                                                   for wi, q in zip(w, row)))
        return total / B
    raise NotImplementedError(f"no naive transcription of {type(loss_fn).__name__}: add one")


def naive_one_to_n_loss(loss_fn: torch.nn.Module, logits: Tensor, target: Tensor,
                        weight: Optional[Tensor] = None) -> float:
    r"""The 1-N losses written out element by element: the binary cross-entropy with
    TuckER's label smoothing :math:`\tilde{y} = (1 - \epsilon) y + 1/N` where
    :math:`\epsilon > 0` (:math:`\tilde{y} = y` for :math:`\epsilon = 0`; a weighted mean over
    the judged candidates with :obj:`weight`), and the softmax cross-entropy against the
    normalised, smoothed targets (the softmax over the judged candidates only; a query with no
    judged answer adds nothing, the mean is over the others)."""
    from torch_mmkg.nn.loss import BCELoss, SoftmaxCrossEntropyLoss
    S, Y = logits.tolist(), target.to(DTYPE).tolist()
    B, N = len(S), len(S[0])
    w = [1.0] * N if weight is None else weight.reshape(-1).tolist()
    eps = loss_fn.label_smoothing
    if isinstance(loss_fn, BCELoss):
        total = 0.0
        for s_row, y_row in zip(S, Y):
            for s, y, wn in zip(s_row, y_row, w):
                ys = (1.0 - eps) * y + 1.0 / N if eps else y  # TuckER smooths only if eps > 0
                total += wn * -(ys * _log_sigmoid(s) + (1.0 - ys) * _log_sigmoid(-s))
        return total / max(B * sum(w), 1.0)
    if isinstance(loss_fn, SoftmaxCrossEntropyLoss):
        keep = [wn > 0 for wn in w]
        n = sum(keep)
        total, rows = 0.0, 0
        for s_row, y_row in zip(S, Y):
            count = sum(y for y, k in zip(y_row, keep) if k)
            if count == 0:  # no judged answer (an ensemble's view): the query adds nothing
                assert weight is not None
                continue
            rows += 1
            top = max(s for s, k in zip(s_row, keep) if k)
            log_z = top + math.log(sum(math.exp(s - top) for s, k in zip(s_row, keep) if k))
            for s, y, k in zip(s_row, y_row, keep):
                if not k:
                    continue
                ys = (1.0 - eps) * y / count + eps / n
                if ys:
                    total -= ys * (s - log_z)
        return total / max(rows, 1)
    raise NotImplementedError(f"no naive transcription of {type(loss_fn).__name__}: add one")


class RegimeCase(_Case):
    r"""The tests of a training regime of :data:`~torch_mmkg.nn.regimes.REGIMES`.

    Subclasses set :attr:`name` (and :attr:`kwargs` of the regime) and, where the regime
    needs particular models, :attr:`models` (registry names; the multi-modal ones are built
    on two modalities with holes); the tests that train a model are parametrized over them
    (:obj:`model_name`).
    """
    name: str = None
    kwargs: Dict[str, Any] = {}
    #: The models trained in the tests: structural and multi-modal ones, a regularised one,
    #: one with batch terms, an ensemble judging views by their masks.
    models: Sequence[str] = ('distmult', 'lbmkgc', 'momok')
    #: Constructor arguments of some models.
    model_kwargs: Dict[str, Dict[str, Any]] = {'lbmkgc': {'alignment_weight': 0.1}}
    #: The default loss of each regime, where the model's own does not fit:
    #: (class, attributes).
    default_losses: Dict[str, Tuple[str, Dict[str, Any]]] = {
        'negative_sampling': ('SoftplusLoss', {}),
        '1-n': ('BCELoss', {'label_smoothing': 0.0}),
    }
    num_nodes: int = 20
    num_relations: int = 3
    channels: int = 4
    num_triples: int = 40
    batch_size: int = 8
    seed: int = 0
    atol: float = ATOL

    @property
    def cls(self) -> type:
        from torch_mmkg.nn.regimes import REGIMES
        return REGIMES[self.name]

    @property
    def canonical(self) -> str:
        from torch_mmkg.nn.regimes import REGIMES
        return REGIMES.canonical(self.name)

    def make_regime(self, **kwargs):
        return self.cls(**{**self.kwargs, **kwargs})

    def make_model(self, name: str):
        from torch_mmkg.nn import MODELS
        torch.manual_seed(self.seed)
        kwargs = dict(self.model_kwargs.get(name, {}))
        cls = MODELS[name]
        if 'features' in _constructor_parameters(cls):
            kwargs.update(zip(('features', 'masks'), _features(self.num_nodes)))
        model = cls(self.num_nodes, self.num_relations, self.channels, **kwargs).to(DTYPE)
        _perturb(model, self.seed + 100, 0.1)
        return model

    def triples(self):
        gen = torch.Generator().manual_seed(self.seed)
        T = self.num_triples
        return (torch.randint(0, self.num_nodes, (T, ), generator=gen),
                torch.randint(0, self.num_relations, (T, ), generator=gen),
                torch.randint(0, self.num_nodes, (T, ), generator=gen))

    def batches(self, regime, model, count: int = 2) -> List[Any]:
        loader = regime.loader(model, *self.triples(), batch_size=self.batch_size,
                               generator=torch.Generator().manual_seed(self.seed))
        return list(itertools.islice(iter(loader), count))

    def naive_loss(self, regime, model, batch) -> float:
        r"""The loss of :obj:`batch` from the model's scores, the loss function written out
        (:func:`naive_kge_loss`, :func:`naive_one_to_n_loss`) and the terms."""
        loss_fn = regime.loss_for(model)
        if self.canonical == 'negative_sampling':
            h, r, t, neg = batch
            scored = model.score_batch(h, r, t, neg)
            parts = [naive_kge_loss(loss_fn, pos, neg_s) for _, pos, neg_s in scored.views
                     if pos.numel()]
        elif self.canonical == '1-n':
            entity, rel, target = batch
            scored = model.score_queries(entity, rel)
            parts = [naive_one_to_n_loss(loss_fn, logits,
                                         target if rows is None else target[rows], weight)
                     for rows, logits, weight in scored.views if logits.size(0)]
        else:
            raise NotImplementedError(f"no naive transcription of regime {self.name!r}: "
                                      f"override naive_loss")
        return sum(parts) + sum(float(x) for x in scored.terms.values())

    def pytest_generate_tests(self, metafunc):
        if 'model_name' in metafunc.fixturenames:
            metafunc.parametrize('model_name', list(self.models))

    # The tests ################################################################################

    def test_loader_batches_give_a_loss(self, model_name):
        r"""The regime's loader's batches go through :meth:`loss`: a finite scalar with a
        gradient."""
        regime = self.make_regime()
        model = self.make_model(model_name).train()
        for batch in self.batches(regime, model):
            model.zero_grad()
            out = regime.loss(model, batch)
            assert out.loss.dim() == 0 and torch.isfinite(out.loss)
            assert out.loss.requires_grad, "the loss has no gradient"
            out.loss.backward()
            assert model.node_emb.weight.grad.abs().sum() > 0
            for key, term in out.terms.items():
                assert term.dim() == 0 and torch.isfinite(term), key

    def test_naive(self, model_name):
        r""":meth:`loss` equals the naive transcription: the loss function of the model's
        scores (per scorer of an ensemble) plus the terms."""
        regime = self.make_regime()
        model = self.make_model(model_name).eval()  # deterministic: no dropout, no noise
        for batch in self.batches(regime, model):
            with torch.no_grad():  # the same random state for both: terms may draw
                state = torch.get_rng_state()  # (MoMoK's random CLUB pair)
                out = regime.loss(model, batch)
                torch.set_rng_state(state)
                want = self.naive_loss(regime, model, batch)
            _close(out.loss, torch.tensor(want, dtype=DTYPE), self.atol,
                   f"{self.name} loss of {model_name} vs naive")

    def test_default_loss(self):
        r"""Without a loss the regime uses the model's own where it fits, else its
        default; with one, that one."""
        from torch_mmkg.nn import loss as losses
        regime = self.make_regime()
        explicit = self.kwargs.get('loss')
        if self.canonical not in self.default_losses and explicit is None:
            raise NotImplementedError(f"declare the default loss of {self.name!r} in "
                                      f"default_losses")
        seen = set()
        for name in ('distmult', 'tucker') + tuple(self.models):
            model = self.make_model(name)
            chosen = regime.loss_for(model)
            if explicit is not None:
                assert chosen is explicit
                continue
            own = model.loss_fn
            if regime.accepts(own):
                assert chosen is own, f"{name}: its own {type(own).__name__} fits, yet unused"
                seen.add('own')
            else:
                cls_name, attrs = self.default_losses[self.canonical]
                assert isinstance(chosen, getattr(losses, cls_name)), (name, chosen)
                for k, v in attrs.items():
                    assert getattr(chosen, k) == v, (name, k, getattr(chosen, k))
                seen.add('default')
        if explicit is None:
            assert seen == {'own', 'default'}, f"only {seen} were exercised"

    def test_wrong_loss_raises(self):
        r"""Every registered loss the regime does not accept is refused with a
        :class:`ValueError` naming it; the others are taken."""
        from torch_mmkg.nn.loss import LOSSES
        kwargs = {k: v for k, v in self.kwargs.items() if k != 'loss'}
        refused = 0
        for name in LOSSES:
            loss = LOSSES.build(name)
            if self.cls.accepts(loss):
                assert self.cls(loss=loss, **kwargs).loss_fn is loss
                continue
            with pytest.raises(ValueError, match=type(loss).__name__):
                self.cls(loss=loss, **kwargs)
            refused += 1
        assert refused, "the regime accepts every loss: the test proves nothing"


def _constructor_parameters(cls) -> Sequence[str]:
    import inspect
    return list(inspect.signature(cls.__init__).parameters)


# The meta-test ################################################################################


def missing_cases(cases: Iterable[type]) -> List[str]:
    r"""The registered components that no case of :obj:`cases` covers: the models of
    :data:`~torch_mmkg.nn.MODELS`, the fusions of :data:`~torch_mmkg.nn.fusion.FUSIONS`, the
    regimes of :data:`~torch_mmkg.nn.regimes.REGIMES` (by :attr:`name`, aliases resolved),
    the interactions of :data:`~torch_mmkg.nn.interactions.INTERACTIONS` and any other
    :class:`~torch_mmkg.nn.interactions.Interaction` subclass exported by
    :mod:`torch_mmkg.nn.interactions` (by :attr:`cls`)."""
    from torch_mmkg.nn import MODELS, interactions
    from torch_mmkg.nn.fusion import FUSIONS
    from torch_mmkg.nn.regimes import REGIMES
    cases = list(cases)
    out = []
    for kind, template, registry in (('model', ModelCase, MODELS),
                                     ('fusion', FusionCase, FUSIONS),
                                     ('regime', RegimeCase, REGIMES)):
        covered = {registry.canonical(c.name) for c in cases
                   if issubclass(c, template) and c.name is not None}
        out += [f"{kind} {n!r}" for n in registry if n not in covered]
    covered = {c.cls for c in cases if issubclass(c, InteractionCase)}
    out += [f"interaction {n!r}" for n, cls in interactions.INTERACTIONS.items()
            if cls not in covered]
    for n in interactions.__all__:
        obj = getattr(interactions, n)
        if (isinstance(obj, type) and issubclass(obj, interactions.Interaction)
                and obj is not interactions.Interaction and obj not in covered
                and obj not in set(interactions.INTERACTIONS.values())):
            out.append(f"interaction {n}")
    return out
