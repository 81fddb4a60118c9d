r"""The test templates of :mod:`torch_mmkg.testing.cases`, instantiated for every registered
component: every interaction exported by :mod:`torch_mmkg.nn.interactions`, every fusion of
``FUSIONS``, every model of ``MODELS`` and every regime of ``REGIMES`` (some in several
configurations). The naive transcriptions below are per triple / per row, in float64.
:func:`test_every_registered_component_has_a_case` fails when a component is registered
without a case here."""
import math

import pytest
import torch

from torch_mmkg.nn import MODELS, interactions
from torch_mmkg.nn.fusion import MeanFusion
from torch_mmkg.nn.interactions import (ComplExInteraction, DistMultInteraction,
                                        EnsembleInteraction, Interaction,
                                        MultiViewInteraction, PairREInteraction,
                                        RotatEInteraction, TransEInteraction,
                                        TuckERInteraction)
from torch_mmkg.nn.interactions import WeightedMultiViewInteraction
from torch_mmkg.nn.loss import BCELoss, MarginRankingLoss, SoftmaxCrossEntropyLoss
from torch_mmkg.testing import (FusionCase, InteractionCase, ModelCase, RegimeCase,
                                model_test_kwargs,
                                missing_cases)

D = 4


def _f(x):
    return [float(v) for v in x]


def _complex(x):
    r"""The complex coordinates of a real vector [re..., im...]."""
    v = _f(x)
    d = len(v) // 2
    return [complex(v[k], v[d + k]) for k in range(d)]


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _softmax(logits, present):
    r"""Softmax over the present entries (0 elsewhere; all 0 if none is present)."""
    if not any(present):
        return [0.0] * len(logits)
    top = max(x for x, p in zip(logits, present) if p)
    e = [math.exp(x - top) if p else 0.0 for x, p in zip(logits, present)]
    return [x / sum(e) for x in e]


def _transe(h, r, t, p, margin):
    h, r, t = _f(h), _f(r), _f(t)
    return margin - sum(abs(a + b - c)**p for a, b, c in zip(h, r, t))**(1.0 / p)


def _distmult(h, r, t):
    return sum(a * b * c for a, b, c in zip(_f(h), _f(r), _f(t)))


# Interactions #################################################################################


class TestTransEL1(InteractionCase):
    cls = TransEInteraction
    kwargs = dict(p_norm=1.0, margin=2.5)

    def naive(self, h, r, t):
        return _transe(h, r, t, 1, 2.5)


class TestTransEL2(InteractionCase):
    cls = TransEInteraction
    kwargs = dict(p_norm=2.0)

    def naive(self, h, r, t):
        return _transe(h, r, t, 2, 0.0)


def _unit(x):
    x = _f(x)
    n = math.sqrt(sum(v * v for v in x))
    return [v / n for v in x]


class TestTransENormalized(InteractionCase):
    r"""OpenKE's TransE (:obj:`norm_flag=True`): h, r and t scaled to unit L2 norm."""
    cls = TransEInteraction
    kwargs = dict(p_norm=1.0, margin=2.0, normalize=True)

    def naive(self, h, r, t):
        return _transe(_unit(h), _unit(r), _unit(t), 1, 2.0)


class TestDistMult(InteractionCase):
    cls = DistMultInteraction

    def naive(self, h, r, t):
        return _distmult(h, r, t)


class TestComplEx(InteractionCase):
    cls = ComplExInteraction

    def naive(self, h, r, t):
        return sum(a * b * c.conjugate()
                   for a, b, c in zip(_complex(h), _complex(r), _complex(t))).real


class TestRotatE(InteractionCase):
    cls = RotatEInteraction
    kwargs = dict(margin=6.0)

    def naive(self, h, theta, t):
        return 6.0 - sum(abs(a * complex(math.cos(th), math.sin(th)) - c)
                         for a, th, c in zip(_complex(h), _f(theta), _complex(t)))


class _PairRE(InteractionCase):
    cls = PairREInteraction
    p = 1

    def naive(self, h, r, t):
        h, r, t = _f(h), _f(r), _f(t)
        d = len(h)
        nh, nt = math.sqrt(sum(x * x for x in h)), math.sqrt(sum(x * x for x in t))
        diff = [h[k] / nh * r[k] - t[k] / nt * r[d + k] for k in range(d)]
        return 4.0 - sum(abs(x)**self.p for x in diff)**(1.0 / self.p)


class TestPairREL1(_PairRE):
    kwargs = dict(margin=4.0)


class TestPairREL2(_PairRE):
    kwargs = dict(margin=4.0, p_norm=2.0)
    p = 2


class TestTuckER(InteractionCase):
    cls = TuckERInteraction
    kwargs = dict(entity_dim=D, relation_dim=3)

    def query(self, h, r):
        W = self.interaction.core.tolist()
        h, r = _f(h), _f(r)
        return [sum(W[i][j][k] * h[i] * r[j] for i in range(len(h)) for j in range(len(r)))
                for k in range(len(h))]

    def naive(self, h, r, t):
        return sum(q * c for q, c in zip(self.query(h, r), _f(t)))


class TestTuckERBatchNorm(TestTuckER):
    r"""In eval mode: the dropouts off, the batch norms with their running statistics."""
    kwargs = dict(entity_dim=D, relation_dim=3, input_dropout=0.3, hidden_dropout1=0.4,
                  hidden_dropout2=0.5, batch_norm=True)
    skips = {'score_heads': "with batch norms score_heads normalises the tail, the query "
                            "entity there (as documented), so it is not forward(e, r, t): "
                            "such a TuckER predicts heads as tails of inverse relations"}

    def make(self):
        inter = super().make()
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for bn in (inter.bn0, inter.bn1):
                bn.running_mean.copy_(torch.rand(D, generator=gen) - 0.5)
                bn.running_var.copy_(torch.rand(D, generator=gen) + 0.5)
                bn.weight.copy_(torch.rand(D, generator=gen) + 0.5)
                bn.bias.copy_(torch.rand(D, generator=gen) - 0.5)
        return inter

    @staticmethod
    def _bn(bn, x):
        mean, var = _f(bn.running_mean), _f(bn.running_var)
        w, b = _f(bn.weight), _f(bn.bias)
        return [(v - m) / math.sqrt(s + bn.eps) * a + c
                for v, m, s, a, c in zip(_f(x), mean, var, w, b)]

    def naive(self, h, r, t):
        inter = self.interaction
        q = self.query(torch.tensor(self._bn(inter.bn0, h), dtype=torch.float64), r)
        q = self._bn(inter.bn1, torch.tensor(q, dtype=torch.float64))
        return sum(a * c for a, c in zip(q, _f(t)))


def _view(x, coeffs):
    return sum(c * x[v] for v, c in enumerate(coeffs) if c)


class TestMultiViewTBKGC(InteractionCase):
    r"""TBKGC's five TransE terms over (structure, multi-modal) views."""
    cls = MultiViewInteraction
    #: Written out from the paper: (s, s), (m, m), (s, m), (m, s), (s + m, s + m).
    terms = (((1, 0), (1, 0)), ((0, 1), (0, 1)), ((1, 0), (0, 1)), ((0, 1), (1, 0)),
             ((1, 1), (1, 1)))

    def make(self):
        return MultiViewInteraction(TransEInteraction(p_norm=1.0, margin=1.5)).double().eval()

    def entity_shape(self):
        return (2, D)

    def naive(self, h, r, t):
        return sum(_transe(_view(h, a), r, _view(t, b), 1, 1.5) for a, b in self.terms)


class TestMultiViewWeighted(InteractionCase):
    r"""Three views, coefficients other than 0/1, a DistMult base."""
    cls = MultiViewInteraction
    terms = (((1, 0, 0), (0, 0, 1), 'a'), ((2, 1, 0), (1, 0, -1), 'b'),
             ((0, 0, 1), (0, 3, 0), 'a'))

    def make(self):
        return MultiViewInteraction(DistMultInteraction(), self.terms).double().eval()

    def entity_shape(self):
        return (3, D)

    def naive(self, h, r, t):
        return sum(_distmult(_view(h, a), r, _view(t, b)) for a, b, _ in self.terms)

    def test_term_groups(self):
        x = self.make_inputs(self.B, self.K, self.N)
        parts = [self.interaction(x.h, x.r, x.t, terms=g) for g in ('a', 'b')]
        torch.testing.assert_close(parts[0] + parts[1], self.interaction(x.h, x.r, x.t))


class TestWeightedMultiViewQEB(InteractionCase):
    r"""QEB's ten TransE terms over two entity views and two relation views, averaged,
    gamma - E (zjukg's version): written out from the card, not from QEB_TERMS."""
    cls = WeightedMultiViewInteraction
    #: (head, relation, tail) as view names: s, m, 'sm' = s + m; r, rm.
    terms = (('s', 'r', 's'), ('m', 'r', 's'), ('s', 'r', 'm'), ('m', 'r', 'm'),
             ('sm', 'r', 'sm'), ('m', 'rm', 'm'), ('sm', 'rm', 'sm'), ('s', 'rm', 's'),
             ('m', 'rm', 's'), ('s', 'rm', 'm'))

    def make(self):
        from torch_mmkg.nn.models.qeb import QEB_TERMS
        return WeightedMultiViewInteraction(TransEInteraction(1.0, margin=6.0), QEB_TERMS,
                                            reduce='mean').double().eval()

    def entity_shape(self):
        return (2, D)

    def relation_shape(self):
        return (2 * D, )

    def naive(self, h, r, t):
        ent = lambda x, v: {'s': x[0], 'm': x[1], 'sm': x[0] + x[1]}[v]  # noqa: E731
        rel = {'r': r[:D], 'rm': r[D:]}
        return sum(_transe(ent(h, a), rel[c], ent(t, b), 1, 6.0)
                   for a, c, b in self.terms) / 10


class TestWeightedMultiViewEvalTerms(InteractionCase):
    r"""IKRL's four energies, weighted, of which evaluation mode scores the image-image one
    only (the original code's ranking energy)."""
    cls = WeightedMultiViewInteraction

    def make(self):
        from torch_mmkg.nn.models.ikrl import IKRL_TERMS
        return WeightedMultiViewInteraction(TransEInteraction(2.0), IKRL_TERMS,
                                            weights=(1.0, 0.5, 2.0, 3.0),
                                            eval_terms=(1, )).double().eval()

    def entity_shape(self):
        return (2, D)

    def naive(self, h, r, t):
        return 0.5 * _transe(h[1], r, t[1], 2, 0.0)

    def test_training_mode_scores_every_term(self):
        x = self.make_inputs(self.B, self.K, self.N)
        self.interaction.train()
        want = [1.0 * _transe(x.h[b][0], x.r[b], x.t[b][0], 2, 0.0)
                + 0.5 * _transe(x.h[b][1], x.r[b], x.t[b][1], 2, 0.0)
                + 2.0 * _transe(x.h[b][0], x.r[b], x.t[b][1], 2, 0.0)
                + 3.0 * _transe(x.h[b][1], x.r[b], x.t[b][0], 2, 0.0) for b in range(self.B)]
        torch.testing.assert_close(self.interaction(x.h, x.r, x.t),
                                   torch.tensor(want, dtype=torch.float64))

    def test_groups_in_evaluation_mode(self):
        r"""A group scores its active terms only: d(i, i) for the unimodal group, zero for
        the cross-modal one (twins negatives in evaluation mode)."""
        x = self.make_inputs(self.B, self.K, self.N)
        f = self.interaction
        torch.testing.assert_close(f(x.h, x.r, x.t, terms='unimodal'), f(x.h, x.r, x.t))
        assert torch.equal(f(x.h, x.r, x.t, terms='crossmodal'), torch.zeros(self.B).double())
        with pytest.raises(ValueError, match="no term of group 'joint'"):
            f(x.h, x.r, x.t, terms='joint')


class _Ensemble(InteractionCase):
    cls = EnsembleInteraction
    views = ('structure', 'image', 'text')
    joint_training = True
    skips = {'score_heads': "EnsembleInteraction.score_heads raises NotImplementedError by "
                            "design: an ensemble scores queries (e, r, ?), heads as tails of "
                            "the inverse relation"}

    def scorers(self):
        raise NotImplementedError

    def make(self):
        torch.manual_seed(self.seed)
        scorers = self.scorers()
        fusions = ({'entity_fusion': MeanFusion(D), 'relation_fusion': MeanFusion(D)}
                   if 'joint' in scorers else {})
        return EnsembleInteraction(self.views, scorers, joint_training=self.joint_training,
                                   **fusions).double().eval()

    def entity_shape(self):
        return (len(self.views), D)

    def relation_shape(self):
        return (len(self.views), D)

    def naive_scorer(self, name, h, r, t):
        return _distmult(h, r, t)

    def naive(self, h, r, t, h_mask=None, t_mask=None):
        S = len(self.views)
        h_mask = [True] * S if h_mask is None else [bool(m) for m in h_mask]
        t_mask = [True] * S if t_mask is None else [bool(m) for m in t_mask]
        logits = []
        for s in self.interaction.active:
            if s == 'joint':
                def mean(x, m):
                    n = sum(m)
                    return (sum(x[i] for i in range(S) if m[i]) / n if n else
                            torch.zeros(D, dtype=x.dtype))
                logits.append(self.naive_scorer(s, mean(h, h_mask), mean(r, [True] * S),
                                                mean(t, t_mask)))
            else:
                i = self.views.index(s)
                if h_mask[i] and t_mask[i]:
                    logits.append(self.naive_scorer(s, h[i], r[i], t[i]))
        if self.joint_training:  # minus the mean probability of the judging scorers
            return -sum(_sigmoid(-x) for x in logits) / len(logits) if logits else -1.0
        return sum(logits) / len(logits) if logits else torch.finfo(torch.float64).min

    def test_score_heads_refused(self):
        x = self.make_inputs(self.B, self.K, self.N)
        with pytest.raises(NotImplementedError, match='inverse relation'):
            self.interaction.score_heads(self.interaction.prepare_candidates(x.table,
                                                                             x.table_mask),
                                         x.r, x.h, h_mask=x.table_mask, t_mask=x.h_mask)


class TestEnsembleJoint(_Ensemble):
    r"""Two view scorers (text unscored) and a joint one, joint training (probabilities)."""
    def scorers(self):
        return {'structure': DistMultInteraction(), 'image': DistMultInteraction(),
                'joint': DistMultInteraction()}


class TestEnsembleLogits(_Ensemble):
    r"""Heterogeneous view scorers, no joint view, the mean of the logits."""
    joint_training = False

    def scorers(self):
        return {'structure': TransEInteraction(p_norm=2.0), 'image': DistMultInteraction(),
                'text': DistMultInteraction()}

    def naive_scorer(self, name, h, r, t):
        return _transe(h, r, t, 2, 0.0) if name == 'structure' else _distmult(h, r, t)


class TestEnsembleDecisionWeights(_Ensemble):
    r"""IMF's learned decision fusion: the judging scorers' probabilities weighted by
    softmax(w), renormalised over the judging scorers (w perturbed away from 0)."""
    def scorers(self):
        return {'structure': DistMultInteraction(), 'image': DistMultInteraction(),
                'text': DistMultInteraction(), 'joint': DistMultInteraction()}

    def make(self):
        torch.manual_seed(self.seed)
        out = EnsembleInteraction(self.views, self.scorers(), MeanFusion(D), MeanFusion(D),
                                  decision_weights=True).double().eval()
        with torch.no_grad():
            out.decision_logits.copy_(torch.tensor([0.5, -1.0, 0.25, 1.5]))
        return out

    def naive(self, h, r, t, h_mask=None, t_mask=None):
        S = len(self.views)
        h_mask = [True] * S if h_mask is None else [bool(m) for m in h_mask]
        t_mask = [True] * S if t_mask is None else [bool(m) for m in t_mask]
        w = [math.exp(x) for x in self.interaction.decision_logits.tolist()]
        w = [x / sum(w) for x in w]
        num = den = 0.0
        for j, s in enumerate(self.interaction.names):
            if s == 'joint':
                def mean(x, m):
                    n = sum(m)
                    return (sum(x[i] for i in range(S) if m[i]) / n if n else
                            torch.zeros(D, dtype=x.dtype))
                x = _distmult(mean(h, h_mask), mean(r, [True] * S), mean(t, t_mask))
            else:
                i = self.views.index(s)
                if not (h_mask[i] and t_mask[i]):
                    continue
                x = _distmult(h[i], r[i], t[i])
            num, den = num + w[j] * _sigmoid(-x), den + w[j]
        return -num / den


class TestEnsembleLogitAverage(_Ensemble):
    r"""MoSE's average inference: views trained apart (joint training), scored by the mean
    of the judging scorers' logits."""
    def scorers(self):
        return {'structure': ComplExInteraction(), 'image': ComplExInteraction(),
                'text': ComplExInteraction()}

    def make(self):
        torch.manual_seed(self.seed)
        return EnsembleInteraction(self.views, self.scorers(), joint_training=True,
                                   average='logit').double().eval()

    def entity_shape(self):
        return (len(self.views), 2 * D)

    def relation_shape(self):
        return (len(self.views), 2 * D)

    def naive(self, h, r, t, h_mask=None, t_mask=None):
        S = len(self.views)
        h_mask = [True] * S if h_mask is None else [bool(m) for m in h_mask]
        t_mask = [True] * S if t_mask is None else [bool(m) for m in t_mask]
        logits = []
        for i in range(S):
            if h_mask[i] and t_mask[i]:
                a, b, c = _complex(h[i]), _complex(r[i]), _complex(t[i])
                logits.append(sum((x * y * z.conjugate()).real for x, y, z in zip(a, b, c)))
        return sum(logits) / len(logits) if logits else torch.finfo(torch.float64).min


# Fusions ######################################################################################


def _rows(fn, stack, mask, rel, width=None):
    B = stack.size(0)
    out = torch.zeros(B, width or stack.size(-1), dtype=stack.dtype)
    for b in range(B):
        out[b] = fn(stack[b], [bool(m) for m in mask[b]], int(rel[b]))
    return out


def _adaptive_row(v, x, present, tau=1.0):
    logits = [sum(a * math.tanh(float(c)) for a, c in zip(_f(v), x[m])) / tau
              for m in range(x.size(0))]
    w = _softmax(logits, present)
    return sum(w[m] * x[m] for m in range(x.size(0)))


class TestAdaptiveFusion(FusionCase):
    name = 'adaptive'

    def naive(self, stack, mask, rel):
        f = self.fusion
        return _rows(lambda x, m, r: _adaptive_row(f.v, x, m, _sigmoid(float(f.zeta[r]))),
                     stack, mask, rel)


class TestAdaptiveFusionNoTemperature(FusionCase):
    name = 'redaf'  # an alias
    kwargs = dict(relation_temperature=False)

    def naive(self, stack, mask, rel):
        return _rows(lambda x, m, r: _adaptive_row(self.fusion.v, x, m), stack, mask, rel)


class TestMeanFusion(FusionCase):
    name = 'mean'

    def naive(self, stack, mask, rel):
        return _rows(lambda x, m, r: sum(x[i] for i in range(len(m)) if m[i]) / max(sum(m), 1)
                     if any(m) else torch.zeros(x.size(-1), dtype=x.dtype), stack, mask, rel)


class TestSumFusion(FusionCase):
    name = 'sum'

    def naive(self, stack, mask, rel):
        return _rows(lambda x, m, r: sum((x[i] for i in range(len(m)) if m[i]),
                                         torch.zeros(x.size(-1), dtype=x.dtype)),
                     stack, mask, rel)


class TestProductFusion(FusionCase):
    name = 'product'

    def naive(self, stack, mask, rel):
        def row(x, m, r):
            if not any(m):
                return torch.zeros(x.size(-1), dtype=x.dtype)
            out = torch.ones(x.size(-1), dtype=x.dtype)
            for i in range(len(m)):
                if m[i]:
                    out = out * x[i]
            return out
        return _rows(row, stack, mask, rel)


class TestConcatFusion(FusionCase):
    name = 'concat'

    def naive(self, stack, mask, rel):
        W, b = self.fusion.lin.weight.tolist(), _f(self.fusion.lin.bias)

        def row(x, m, r):
            flat = [float(x[i, k]) if m[i] else 0.0 for i in range(len(m))
                    for k in range(x.size(-1))]
            return torch.tensor([sum(w * v for w, v in zip(W[o], flat)) + b[o]
                                 for o in range(len(b))], dtype=x.dtype)
        return _rows(row, stack, mask, rel)


class TestConcatFusionRaw(FusionCase):
    r"""The raw concatenation (NATIVE's "w/ concat" as its authors ran it), of width
    :math:`S D`."""
    name = 'concat'
    kwargs = dict(projection=False)

    def naive(self, stack, mask, rel):
        def row(x, m, r):
            return torch.tensor([float(x[i, k]) if m[i] else 0.0 for i in range(len(m))
                                 for k in range(x.size(-1))], dtype=x.dtype)
        return _rows(row, stack, mask, rel, stack.size(-2) * stack.size(-1))


class TestContextGatedFusion(FusionCase):
    name = 'cguaf'  # an alias of 'context'

    def make_mask(self, B, gen):
        # Slot 0 is the structural embedding, present for every entity by construction.
        mask = super().make_mask(B, gen)
        mask[:, 0] = True
        return mask

    def naive(self, stack, mask, rel):
        f = self.fusion

        def row(x, m, r):
            if not any(m[1:]):
                return x[0]
            h_mm = _adaptive_row(f.modal.v, x[1:], m[1:])
            zeta = _sigmoid(float(f.gate[r]))
            return zeta * x[0] + (1.0 - zeta) * h_mm
        return _rows(row, stack, mask, rel)


class TestContextGatedFusionNoStructure(TestContextGatedFusion):
    r"""LBMKGC's ablation "w/o e_s": the modality part alone, relation-free; the structural
    slot only stands in for rows without any modality."""
    name = 'context'
    kwargs = dict(use_structure=False)

    def naive(self, stack, mask, rel):
        f = self.fusion
        return _rows(lambda x, m, r: _adaptive_row(f.modal.v, x[1:], m[1:]) if any(m[1:])
                     else x[0], stack, mask, rel)


class TestAttentionFusion(FusionCase):
    name = 'attention'

    def naive(self, stack, mask, rel):
        f = self.fusion
        W, bias, att = f.weight.tolist(), f.bias.tolist(), _f(f.attention)
        H, M, Din, Dout = f.weight.shape

        def row(x, m, r):
            x = x.tolist()
            out = [0.0] * Dout
            for h in range(H):
                proj = [[max(0.0, sum(x[s][d] * W[h][s][d][o] for d in range(Din))
                             + bias[h][s][o]) for o in range(Dout)] for s in range(M)]
                logits = ([sum(a * p for a, p in zip(att, proj[s])) for s in range(M)]
                          if f.adaptive else [0.0] * M)
                alpha = _softmax(logits, m)
                for s in range(M):
                    for o in range(Dout):
                        out[o] += alpha[s] * proj[s][o]
            return torch.tensor(out, dtype=stack.dtype)
        return _rows(row, stack, mask, rel, f.out_channels)


class TestAttentionFusionUniform(TestAttentionFusion):
    r"""Uniform weights (MoMoK's "w/o adaptive fusion"), three heads, another width."""
    kwargs = dict(adaptive=False, num_heads=3, out_channels=5)
    unused_parameters = {'attention': "uniform weights do not read the attention vector"}


def _mutan_row(f, x, m):
    r"""IMF's fusion of one row: ReLU(sum_k prod_{m present} ReLU(W_mk x_m + b_mk))."""
    K, S, Din, Dout = f.weight.shape
    if not any(m):
        return torch.zeros(Dout, dtype=x.dtype)
    out = [0.0] * Dout
    for k in range(K):
        prod = [1.0] * Dout
        for s in range(S):
            if not m[s]:
                continue
            for o in range(Dout):
                v = sum(float(x[s, i]) * float(f.weight[k, s, i, o]) for i in range(Din))
                prod[o] *= max(0.0, v + float(f.bias[k, s, o]))
        out = [a + b for a, b in zip(out, prod)]
    return torch.tensor([max(0.0, v) for v in out], dtype=x.dtype)


class TestMutanFusion(FusionCase):
    r"""IMF's interactive fusion, a missing slot's factor skipped, three heads."""
    name = 'mutan'
    kwargs = dict(num_heads=3)

    def naive(self, stack, mask, rel):
        return _rows(lambda x, m, r: _mutan_row(self.fusion, x, m), stack, mask, rel)


# Models #######################################################################################


class TestTransE(ModelCase):
    name = 'transe'


class TestTransENormalizedModel(ModelCase):
    name = 'transe'
    kwargs = dict(normalize=True)


class TestDistMultModel(ModelCase):
    r"""Regularised: candidates are gathered and scored by score_gathered."""
    name = 'distmult'


class TestDistMultModelPlain(ModelCase):
    r"""Without the penalty: the fused score_candidates path."""
    name = 'distmult'
    kwargs = dict(regularization=None)


class TestComplExModel(ModelCase):
    name = 'complex'


class TestRotatEModel(ModelCase):
    name = 'rotate'


class TestPairREModel(ModelCase):
    name = 'pairre'


class TestTuckERModel(ModelCase):
    name = 'tucker'


class TestNATIVE(ModelCase):
    r"""A relation-dependent decomposable fusion: weighted candidates (RotatE's kernel)."""
    name = 'native'
    multimodal = True


class TestNATIVEMean(ModelCase):
    r"""A relation-free fusion."""
    name = 'native'
    multimodal = True
    kwargs = dict(fusion='mean')


class TestNATIVEConcat(ModelCase):
    r"""The authors' "w/ concat" ablation: a joint entity of width :math:`(M + 1) 2d` and
    relations as wide."""
    name = 'native'
    multimodal = True
    kwargs = dict(fusion='concat')


class TestTBKGC(ModelCase):
    name = 'tbkgc'
    multimodal = True


class TestMoMoK(ModelCase):
    name = 'momok'
    multimodal = True


class TestLBMKGC(ModelCase):
    name = 'lbmkgc'
    multimodal = True
    kwargs = dict(alignment_weight=0.1)


class TestLBMKGCNoStructure(ModelCase):
    r"""A fusion that is relation-dependent or not by an option (LBMKGC "w/o e_s")."""
    name = 'lbmkgc'
    multimodal = True
    kwargs = dict(use_structure=False)


class TestVBKGC(ModelCase):
    r"""The authors' normalised TransE terms (the default)."""
    name = 'vbkgc'
    multimodal = True


class TestVBKGCUnnormalized(ModelCase):
    name = 'vbkgc'
    multimodal = True
    kwargs = dict(normalize=False)


def _literal_features(N):
    r"""A numeric table in this library's [values | presence] layout (4 attributes, some
    missing per attribute, entities 0 and 5 without any) and a dense 'text' vector with
    holes, for the literal models."""
    gen = torch.Generator().manual_seed(2024)
    k = torch.arange(N)
    present = torch.rand(N, 4, generator=gen) > 0.35
    present[k % 5 == 0] = False
    values = torch.randn(N, 4, generator=gen) * present
    return ({'numeric': torch.cat([values, present.float()], dim=1),
             'text': torch.randn(N, 5, generator=gen)},
            {'numeric': present.any(dim=1), 'text': k % 4 != 1})


def _train_edge_index(N, E=30):
    gen = torch.Generator().manual_seed(7)
    return torch.randint(0, N, (2, E), generator=gen)


class _LiteralCase(ModelCase):
    multimodal = True

    def make_features(self):
        return _literal_features(self.num_nodes)


class TestLiteralE(_LiteralCase):
    r"""DistMult with the gate (the paper's LiteralE), entities without literals masked."""
    name = 'literale'


class TestLiteralEComplEx(_LiteralCase):
    r"""ComplEx: one gate per part."""
    name = 'literale'
    kwargs = dict(base='complex')


class TestLiteralELinear(_LiteralCase):
    r"""The linear g_lin."""
    name = 'literale'
    kwargs = dict(gate=False)


class TestLiteralEUnmasked(_LiteralCase):
    r"""The original: entities without literals gated with l = 0."""
    name = 'literale'
    kwargs = dict(mask_missing=False)


class TestLiteralEPresenceInput(_LiteralCase):
    r"""Presence indicators appended to the literal vector."""
    name = 'literale'
    kwargs = dict(presence_input=True)


class TestLiteralEInverse(_LiteralCase):
    r"""ComplEx with inverse relations for head queries."""
    name = 'literale'
    kwargs = dict(base='complex', inverse_relations=True)


class TestKBLN(_LiteralCase):
    r"""RBF terms only where both entities have the attribute (the default)."""
    name = 'kbln'
    kwargs = dict(train_edge_index=_train_edge_index(20))


class TestKBLNUnmasked(_LiteralCase):
    r"""The original: every attribute, missing ones as 0."""
    name = 'kbln'
    kwargs = dict(train_edge_index=_train_edge_index(20), mask_missing=False)


def _instance_features(N):
    r"""Modality 'image' as three instances per entity with holes (entity 0 has none, some
    have one or two), 'text' as one vector per entity."""
    gen = torch.Generator().manual_seed(4321)
    image = torch.randn(N, 3, 6, generator=gen)
    k = torch.arange(N)
    mask = torch.stack([k % 3 != 0, k % 2 == 0, k % 5 == 1], dim=1)
    mask[0] = False
    return ({'image': image, 'text': torch.randn(N, 5, generator=gen)},
            {'image': mask, 'text': k % 4 != 1})


class TestIKRL(ModelCase):
    r"""The four energies in training and evaluation (the tables' re-implementation)."""
    name = 'ikrl'
    multimodal = True


class TestIKRLImageEnergy(ModelCase):
    r"""The original code's ranking energy d(i, i) in evaluation mode, one hinge per energy
    in training."""
    name = 'ikrl'
    multimodal = True
    kwargs = dict(test_energy='image', per_term_loss=True)


class TestIKRLZjukg(ModelCase):
    r"""zjukg's version: normalised TransE terms, W x + b on fine-tuned features."""
    name = 'ikrl'
    multimodal = True
    kwargs = dict(normalize=True, projection_bias=True, trainable_features=True)


class TestIKRLInstances(ModelCase):
    r"""Attention over several images per entity ([N, K, F] features, [N, K] masks)."""
    name = 'ikrl'
    multimodal = True

    def make_features(self):
        return _instance_features(self.num_nodes)


class TestIKRLInstancesMean(TestIKRLInstances):
    r"""The mean of an entity's images (IKRL (AVG)), one hinge per energy."""
    kwargs = dict(multi_image_attention=False, per_term_loss=True)


class TestQEB(ModelCase):
    r"""The original: the ten energies summed, tanh dense layer."""
    name = 'qeb'
    multimodal = True


class TestQEBZjukg(ModelCase):
    r"""zjukg's version: the mean of the ten normalised energies, gamma - E, a linear layer on
    fine-tuned features."""
    name = 'qeb'
    multimodal = True
    kwargs = dict(aggregate='mean', score_margin=6.0, activation='linear', normalize=True,
                  trainable_features=True)


class TestTransAE(ModelCase):
    r"""The autoencoder's code as the entity; missing rows as the original's fixed noise."""
    name = 'transae'
    multimodal = True


class TestTransAEMasked(ModelCase):
    r"""Missing rows as zeros in the encoder, left out of the reconstruction."""
    name = 'transae'
    multimodal = True
    kwargs = dict(missing='mask', modality_channels=3)


class TestTransAENoAutoencoder(ModelCase):
    r"""The comparison tables' TransE-like re-implementation (a free entity table)."""
    name = 'transae'
    multimodal = True
    kwargs = dict(autoencoder=False, normalize=True)


class TestMMKRL(ModelCase):
    r"""Four energies over the views [e, e'_h, e'_t, m], with the alignment term."""
    name = 'mmkrl'
    multimodal = True


class TestMMKRLUnmasked(ModelCase):
    r"""Missing rows as stored, frozen features, no alignment."""
    name = 'mmkrl'
    multimodal = True
    kwargs = dict(mask_missing=False, trainable_features=False, alignment_weight=0.0)


class TestAdaMF(ModelCase):
    r"""A relation-free adaptive fusion over single-linear projections of trainable
    feature tables (RotatE's kernel on the fused table)."""
    name = 'adamf'
    multimodal = True


class TestAdaMFUnmasked(ModelCase):
    r"""The paper's fusion: every stored row enters the softmax."""
    name = 'adamf'
    multimodal = True
    kwargs = dict(mask_missing=False)


class TestIMF(ModelCase):
    r"""IMF as its code runs: equal decision weights, projected features."""
    name = 'imf'
    multimodal = True


class TestIMFPaper(ModelCase):
    r"""The paper's learned decision fusion, the contrastive term, another relation width."""
    name = 'imf'
    multimodal = True
    kwargs = dict(decision='learned', contrastive_weight=0.1, relation_channels=3)


class TestIMFUnmasked(ModelCase):
    name = 'imf'
    multimodal = True
    kwargs = dict(mask_missing=False, num_heads=1)


class TestMoSE(ModelCase):
    r"""Pure modality split (alpha = 1), tau = 20, N3."""
    name = 'mose'
    multimodal = True


class TestMoSEMixed(ModelCase):
    r"""alpha = 0.5 (the structure mixed into every modality), unmasked, tau = 2."""
    name = 'mose'
    multimodal = True
    kwargs = dict(alpha=0.5, scale=2.0, mask_missing=False, init_size=0.1)


# Regimes ######################################################################################


class TestNegativeSampling(RegimeCase):
    name = 'negative_sampling'
    kwargs = dict(num_negatives=3)


class TestNegativeSamplingMarginMean(RegimeCase):
    name = 'ns'  # an alias
    kwargs = dict(num_negatives=3, loss=MarginRankingLoss(0.5, aggregate='mean'))


class TestNegativeSamplingTwins(RegimeCase):
    name = 'negative_sampling'
    kwargs = dict(num_negatives=3, twins=True)
    models = ('tbkgc', 'vbkgc')


class TestOneToN(RegimeCase):
    name = '1-n'


class TestOneToNSoftmax(RegimeCase):
    name = 'kvsall'  # an alias
    kwargs = dict(loss=SoftmaxCrossEntropyLoss(0.1))


class TestOneToNSmoothedBCE(RegimeCase):
    name = '1-n'
    kwargs = dict(loss=BCELoss(0.2))


def _one(i):
    return torch.tensor([int(i)])


def _naive_triple_scores(model, h, r, t, negatives):
    r"""The model's forward score of every positive and of every negative triple, one triple
    at a time (:obj:`[B]`, :obj:`[B, K]`)."""
    from torch_mmkg.testing.cases import DTYPE
    side = negatives.side_mask()
    pos, neg = [], []
    for b in range(h.numel()):
        pos.append(float(model(_one(h[b]), r[b:b + 1], _one(t[b]))))
        row = []
        for k in range(negatives.index.size(1)):
            e = negatives.index[b, k]
            hh, tt = (e, t[b]) if side[b, k] else (h[b], e)
            row.append(float(model(_one(hh), r[b:b + 1], _one(tt))))
        neg.append(row)
    return torch.tensor(pos, dtype=DTYPE), torch.tensor(neg, dtype=DTYPE)


class _DrawsReplayed:
    r"""The regime draws from the global generator (not the loader's), which
    :meth:`RegimeCase.test_naive` restores before the naive transcription: both see the same
    draws."""
    def batches(self, regime, model, count: int = 2):
        out = super().batches(regime, model, count)
        regime._rng = None
        return out


class TestKBGAN(_DrawsReplayed, RegimeCase):
    r"""The generator's softmax policy over the candidates (its forward scores, one at a
    time), the draw, the discriminator's loss of the drawn negatives; the REINFORCE surrogate
    is worth zero (test/nn/test_regimes_kbgan.py tests its gradient)."""
    name = 'kbgan'
    kwargs = dict(num_negatives=2, num_candidates=4)
    models = ('distmult', 'transe', 'lbmkgc')
    default_losses = {**RegimeCase.default_losses, 'kbgan': ('SoftplusLoss', {})}

    def naive_loss(self, regime, model, batch):
        from torch_mmkg.loader import Negatives
        from torch_mmkg.testing.cases import naive_kge_loss
        h, r, t, cand = batch
        _, g = _naive_triple_scores(regime.generator, h, r, t, cand)
        e = torch.exp(g / regime.temperature - (g / regime.temperature).max(1, True).values)
        pick = torch.multinomial(e / e.sum(1, keepdim=True), regime.num_negatives,
                                 replacement=True)
        negatives = Negatives(cand.index.gather(1, pick), cand.corrupt_head)
        pos, neg = _naive_triple_scores(model, h, r, t, negatives)
        terms = model.score_batch(h, r, t, negatives).terms
        return (naive_kge_loss(regime.loss_for(model), pos, neg) +
                sum(float(x) for x in terms.values()))


class TestMANSHybrid(RegimeCase):
    r"""The first :math:`\lfloor \beta K B \rfloor` negatives (in OpenKE's order) keep the
    replaced entity's structural slot and take the candidate's modality slots; the others
    are whole entities (test/nn/test_regimes_mans.py tests every mode)."""
    name = 'mans'
    kwargs = dict(num_negatives=3, mode='H', beta=0.5)
    models = ('ikrl', 'lbmkgc', 'tbkgc')
    default_losses = {**RegimeCase.default_losses, 'mans': ('SoftplusLoss', {})}

    def naive_loss(self, regime, model, batch):
        from torch_mmkg.testing.cases import naive_kge_loss
        h, r, t, negatives = batch
        pos, neg = _naive_triple_scores(model, h, r, t, negatives)
        B, K = negatives.index.shape
        side = negatives.side_mask()
        count = int(K * regime.beta * B)
        for b in range(B):
            for k in range(K):
                if k * B + b >= count:
                    continue
                own = h[b] if side[b, k] else t[b]
                s_own, m_own = model.modality_stack(_one(own))
                s_c, m_c = model.modality_stack(_one(negatives.index[b, k]))
                hybrid = torch.cat([s_own[:, :1], s_c[:, 1:]], dim=1)
                mask = torch.cat([m_own[:, :1], m_c[:, 1:]], dim=1)
                sh, mh = model.modality_stack(_one(h[b]))
                st, mt = model.modality_stack(_one(t[b]))
                if side[b, k]:
                    s = model.score_stacks(hybrid, mask, r[b:b + 1], st, mt)
                else:
                    s = model.score_stacks(sh, mh, r[b:b + 1], hybrid, mask)
                neg[b, k] = float(s)
        terms = model.score_batch(h, r, t, negatives).terms
        return (naive_kge_loss(regime.loss_for(model), pos, neg) +
                sum(float(x) for x in terms.values()))


def _mmrns_features():
    from torch_mmkg.testing.cases import _features
    return _features(RegimeCase.num_nodes)


class TestMMRNS(_DrawsReplayed, RegimeCase):
    r"""The loss's value is the regime's loss of the model's forward scores of the drawn
    negatives (the straight-through negatives are exactly the drawn entities forward), plus
    the terms (test/nn/test_regimes_mmrns.py transcribes the sampler and the contrastive
    terms)."""
    name = 'mmrns'
    kwargs = dict(num_negatives=3, pre_sample=12, features=_mmrns_features()[0],
                  masks=_mmrns_features()[1])
    models = ('transe', 'lbmkgc', 'ikrl')
    default_losses = {**RegimeCase.default_losses,
                      'mmrns': ('SelfAdversarialLoss', {'temperature': 0.5})}

    def naive_loss(self, regime, model, batch):
        from torch_mmkg.testing.cases import naive_kge_loss
        h, r, t, _ = batch
        out = regime.loss(model, batch)  # the same draws: for its negatives and terms only
        pos, neg = _naive_triple_scores(model, h, r, t, out.context['negatives'])
        return (naive_kge_loss(regime.loss_for(model), pos, neg) +
                sum(float(x) for x in out.terms.values()))


class TestVISTA(ModelCase):
    r"""Entity and relation transformers, the [MASK] decoder, dot-product scores, one
    vector per modality (masked where missing)."""
    name = 'vista'
    multimodal = True
    kwargs = dict(num_heads=2, feedforward_channels=8, structure_dropout=0.1)


class TestVISTAUnmaskedNoRelationEncoder(ModelCase):
    r"""Every stored input attended, relations as LN(r_s), two decoder layers."""
    name = 'vista'
    multimodal = True
    kwargs = dict(num_heads=1, feedforward_channels=8, structure_dropout=0.1,
                  mask_missing=False, relation_encoder=False, num_decoder_layers=2)


class TestMyGO(ModelCase):
    r"""MyGO on dense modalities (one token each): TuckER head, FGC term."""
    name = 'mygo'
    multimodal = True
    kwargs = dict(num_heads=2, feedforward_channels=8, structure_dropout=0.1, fgc_weight=0.1,
                  fgc_entities=6)


class TestMyGODot(ModelCase):
    r"""MyGO with the [MASK] output alone as the query (no TuckER), no FGC."""
    name = 'mygo'
    multimodal = True
    kwargs = dict(num_heads=1, feedforward_channels=8, structure_dropout=0.1, fgc_weight=0.0,
                  scorer='dot')


class TestGatedSimilarityComplEx(InteractionCase):
    r"""RSME's score: beta ComplEx + (1 - beta)/M sum_m g_{r,m} <x_h,m, x_t,m>, written out
    from the card."""
    cls = interactions.GatedSimilarityComplExInteraction
    kwargs = dict(complex_channels=4, similarity_channels=[3, 2], beta=0.7)

    def naive(self, h, r, t):
        c = 4
        hc, rc, tc = _complex(h[:c]), _complex(r[:c]), _complex(t[:c])
        structural = sum(a * b * e.conjugate() for a, b, e in zip(hc, rc, tc)).real
        hs, ts, g = _f(h[c:]), _f(t[c:]), _f(r[c:])
        image = (g[0] * sum(hs[k] * ts[k] for k in range(3)) +
                 g[1] * sum(hs[k] * ts[k] for k in range(3, 5)))
        return 0.7 * structural + 0.3 / 2 * image


class TestRSME(ModelCase):
    r"""The paper: alpha-mix of e_s and x W, gated cosine of raw features (the forget gate
    from MRP on the training triples in the trainer test)."""
    name = 'rsme'
    multimodal = True


class TestRSMEPerRelationAlpha(ModelCase):
    r"""alpha per relation (a relation-dependent, decomposable fusion), the authors' code's
    training (ComplEx alone in training mode), a given forget gate."""
    name = 'rsme'
    multimodal = True
    kwargs = dict(alpha=torch.tensor([0.2, 0.7, 0.9]), train_similarity=False,
                  forget_gate=torch.tensor([1.0, 0.0, 1.0]))

    def build_from_data(self, data, seed: int = 0):
        torch.manual_seed(seed)
        return self.cls.from_data(data, self.channels, alpha=torch.tensor([0.2, 0.7, 0.9]),
                                  train_similarity=False)


class TestRSMEZjukg(ModelCase):
    r"""zjukg's version: the projection concatenated, cosine of the projections, beta 0.95,
    W x + b, Xavier, no gate; the stored rows of missing features used as they are."""
    name = 'rsme'
    multimodal = True
    kwargs = dict(combine='concat', similarity='projected', beta=0.95, projection_bias=True,
                  init_scale=None, mask_missing=False)


class TestOTKGE(ModelCase):
    r"""The authors' code: the plan from entities 0-9, kernel exp(-0.1 C)."""
    name = 'otkge'
    multimodal = True
    kwargs = dict(modality_weights={'image': 0.1, 'text': 0.7}, scale=3.0)


class TestOTKGEAllRenormalized(ModelCase):
    r"""The plan from every entity, a proper epsilon, missing weights renormalised."""
    name = 'otkge'
    multimodal = True
    kwargs = dict(ot_entities='all', ot_epsilon=0.5, missing='renormalize', scale=3.0)


class TestOTKGEUnmasked(ModelCase):
    r"""Missing features as the authors' zero rows, the plan from entities 0-4."""
    name = 'otkge'
    multimodal = True
    kwargs = dict(mask_missing=False, ot_entities=5, scale=3.0)


class TestMKGformer(ModelCase):
    r"""MKGformer on tiny randomly initialised BERT and CLIP-ViT configurations (2 layers,
    the top one fused), precomputed visual features with holes, the offline MiniLM
    tokenizer; skipped without transformers."""
    name = 'mkgformer'
    multimodal = True

    @property
    def kwargs(self):
        return model_test_kwargs('mkgformer', self.channels)


# The meta-test ################################################################################

TEMPLATES = (InteractionCase, FusionCase, ModelCase, RegimeCase)
CASES = [c for c in list(globals().values())
         if isinstance(c, type) and issubclass(c, TEMPLATES) and c.__name__.startswith('Test')]


def test_every_registered_component_has_a_case():
    missing = missing_cases(CASES)
    assert not missing, (f"registered components without a test case in {__file__}: "
                         f"{missing}; add a subclass of the matching template")


def test_missing_cases_notices_new_components(monkeypatch):
    class NewInteraction(Interaction):
        pass

    assert missing_cases([c for c in CASES if not issubclass(c, RegimeCase)]) == [
        "regime 'negative_sampling'", "regime '1-n'", "regime 'kbgan'", "regime 'mans'",
        "regime 'mmrns'"]
    MODELS.register('template_probe', object)
    try:
        monkeypatch.setattr(interactions, 'NewInteraction', NewInteraction, raising=False)
        monkeypatch.setattr(interactions, '__all__', interactions.__all__ + ['NewInteraction'])
        missing = missing_cases(CASES)
    finally:
        MODELS.unregister('template_probe')
    assert any('template_probe' in m or 'templateprobe' in m for m in missing), missing
    assert 'interaction NewInteraction' in missing
