import itertools
import math

import pytest
import torch

from torch_mmkg.nn import (ComplExInteraction, DistMultInteraction, PairREInteraction,
                           RotatEInteraction, TransEInteraction, TuckERInteraction)

DTYPE = torch.float64
ATOL = 1e-9
B, K, N, D = 4, 3, 6, 5  # batch, candidates per query, entities, (complex) dimension
DR_TUCKER = 3

# Naive transcriptions of the papers' formulas, for ONE triple of 1-d float64 tensors. ######


def as_complex(x):
    re, im = x[:x.numel() // 2], x[x.numel() // 2:]
    return torch.complex(re, im)  # complex128


def naive_transe(p, margin):
    def f(h, r, t):
        return margin - sum(abs(float(h[k] + r[k] - t[k]))**p for k in range(h.numel()))**(1 / p)
    return f


def naive_distmult(h, r, t):
    return sum(float(h[k]) * float(r[k]) * float(t[k]) for k in range(h.numel()))


def naive_complex(h, r, t):
    return float(torch.sum(as_complex(h) * as_complex(r) * torch.conj(as_complex(t))).real)


def naive_rotate(margin):
    def f(h, theta, t):
        rot = torch.polar(torch.ones_like(theta), theta)
        return margin - float(torch.abs(as_complex(h) * rot - as_complex(t)).sum())
    return f


def naive_pairre(margin, p):
    def f(h, r, t):
        d = h.numel()
        h_hat = h / math.sqrt(sum(float(x)**2 for x in h))
        t_hat = t / math.sqrt(sum(float(x)**2 for x in t))
        r_h, r_t = r[:d], r[d:]
        diff = [float(h_hat[k] * r_h[k] - t_hat[k] * r_t[k]) for k in range(d)]
        return margin - sum(abs(x)**p for x in diff)**(1 / p)
    return f


def naive_tucker(core):
    W = core.tolist()

    def f(h, r, t):
        h, r, t = h.tolist(), r.tolist(), t.tolist()
        return sum(W[i][j][k] * h[i] * r[j] * t[k] for i in range(len(h))
                   for j in range(len(r)) for k in range(len(t)))
    return f


def make_tucker(**kwargs):
    torch.manual_seed(7)
    return TuckERInteraction(D, DR_TUCKER, **kwargs).to(DTYPE).eval()


def cases():
    r"""(id, interaction, naive, entity width, relation width)."""
    out = [
        ('transe-p1', TransEInteraction(p_norm=1.0, margin=2.5), naive_transe(1, 2.5), D, D),
        ('transe-p2', TransEInteraction(p_norm=2.0), naive_transe(2, 0.0), D, D),
        ('distmult', DistMultInteraction(), naive_distmult, D, D),
        ('complex', ComplExInteraction(), naive_complex, 2 * D, 2 * D),
        ('rotate', RotatEInteraction(margin=6.0), naive_rotate(6.0), 2 * D, D),
        ('pairre-p1', PairREInteraction(margin=4.0), naive_pairre(4.0, 1), D, 2 * D),
        ('pairre-p2', PairREInteraction(margin=4.0, p_norm=2.0), naive_pairre(4.0, 2), D,
         2 * D),
    ]
    tucker = make_tucker()
    out.append(('tucker', tucker, naive_tucker(tucker.core.detach()), D, DR_TUCKER))
    return out


CASES = cases()
IDS = [c[0] for c in CASES]


def rand(*shape):
    return torch.randn(*shape, dtype=DTYPE)


def naive_matrix(naive, hs, rs, ts):
    r"""naive(hs[i], rs[i], ts[i]) for every index tuple of the leading dimensions."""
    out = torch.empty(hs.shape[:-1], dtype=DTYPE)
    for idx in itertools.product(*(range(s) for s in out.shape)):
        out[idx] = naive(hs[idx], rs[idx], ts[idx])
    return out


@pytest.mark.parametrize('name,interaction,naive,de,dr', CASES, ids=IDS)
def test_widths(name, interaction, naive, de, dr):
    if name == 'tucker':
        return  # TuckER's widths are set by its constructor (d_e, d_r)
    assert interaction.entity_width(D) == de
    assert interaction.relation_width(D) == dr


@pytest.mark.parametrize('name,interaction,naive,de,dr', CASES, ids=IDS)
def test_forward_triples(name, interaction, naive, de, dr):
    torch.manual_seed(0)
    h, r, t = rand(B, de), rand(B, dr), rand(B, de)
    out = interaction(h, r, t)
    assert out.shape == (B, ) and out.dtype == DTYPE
    expected = torch.tensor([naive(h[b], r[b], t[b]) for b in range(B)], dtype=DTYPE)
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize('name,interaction,naive,de,dr', CASES, ids=IDS)
def test_forward_broadcast(name, interaction, naive, de, dr):
    torch.manual_seed(1)
    h, r, t = rand(B, 1, de), rand(B, 1, dr), rand(B, K, de)
    # K candidate tails per query: [B, 1, D] against [B, K, D].
    out = interaction(h, r, t)
    assert out.shape == (B, K)
    expected = naive_matrix(naive, h.expand(B, K, de), r.expand(B, K, dr), t)
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)
    # K candidate heads per query: [B, K, D] against [B, 1, D].
    out = interaction(t, r, h)
    assert out.shape == (B, K)
    expected = naive_matrix(naive, t, r.expand(B, K, dr), h.expand(B, K, de))
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)
    # Candidates shared by the whole batch: [B, 1, D] against [1, K, D].
    shared = rand(1, K, de)
    out = interaction(h, r, shared)
    expected = naive_matrix(naive, h.expand(B, K, de), r.expand(B, K, dr),
                            shared.expand(B, K, de))
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize('name,interaction,naive,de,dr', CASES, ids=IDS)
def test_score_tails_and_heads(name, interaction, naive, de, dr):
    torch.manual_seed(2)
    h, r, t, e_all = rand(B, de), rand(B, dr), rand(B, de), rand(N, de)
    # Tails: (h_b, r_b, e_n) for every pair.
    out = interaction.score_tails(h, r, e_all)
    assert out.shape == (B, N) and out.dtype == DTYPE
    expected = torch.tensor([[naive(h[b], r[b], e_all[n]) for n in range(N)]
                             for b in range(B)], dtype=DTYPE)
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)
    # Heads: (e_n, r_b, t_b) for every pair (for RotatE this checks the conjugate-rotation
    # identity |h e^{iθ} - t| = |h - t e^{-iθ}| for every head).
    out = interaction.score_heads(e_all, r, t)
    assert out.shape == (B, N) and out.dtype == DTYPE
    expected = torch.tensor([[naive(e_all[n], r[b], t[b]) for n in range(N)]
                             for b in range(B)], dtype=DTYPE)
    assert torch.allclose(out, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize('name,interaction,naive,de,dr', CASES, ids=IDS)
def test_score_all_matches_forward(name, interaction, naive, de, dr):
    # The specialised 1-vs-all paths equal the generic chunked fallback of the base class.
    torch.manual_seed(3)
    h, r, t, e_all = rand(B, de), rand(B, dr), rand(B, de), rand(N, de)
    assert torch.allclose(interaction.score_tails(h, r, e_all),
                          interaction(h[:, None], r[:, None], e_all[None]), atol=ATOL, rtol=0)
    assert torch.allclose(interaction.score_heads(e_all, r, t),
                          interaction(e_all[None], r[:, None], t[:, None]), atol=ATOL, rtol=0)


def test_rotate_head_identity_large_phases():
    # Phases far outside [-π, π] and entities of very different moduli.
    torch.manual_seed(4)
    inter, naive = RotatEInteraction(margin=0.0), naive_rotate(0.0)
    theta = 20 * rand(B, D)
    t = rand(B, 2 * D) * torch.logspace(-2, 2, 2 * D, dtype=DTYPE)
    h_all = rand(N, 2 * D)
    out = inter.score_heads(h_all, theta, t)
    expected = torch.tensor([[naive(h_all[n], theta[b], t[b]) for n in range(N)]
                             for b in range(B)], dtype=DTYPE)
    assert torch.allclose(out, expected, atol=1e-8, rtol=1e-12)


def test_rotate_is_sum_of_moduli_not_euclidean_norm():
    # Documents the choice of formula: the paper's sum of moduli, not PyG's Euclidean norm of
    # the whole complex difference (which a wrong implementation could silently compute).
    torch.manual_seed(5)
    inter = RotatEInteraction(margin=9.0)
    h, theta, t = rand(B, 2 * D), rand(B, D), rand(B, 2 * D)
    diff = as_complex_rows(h) * torch.polar(torch.ones_like(theta), theta) - as_complex_rows(t)
    pyg_style = 9.0 - torch.sqrt((diff.abs()**2).sum(-1))
    sum_of_moduli = 9.0 - diff.abs().sum(-1)
    out = inter(h, theta, t)
    assert torch.allclose(out, sum_of_moduli, atol=ATOL, rtol=0)
    assert ((out - pyg_style).abs() > 1e-3).all()


def as_complex_rows(x):
    re, im = x.chunk(2, dim=-1)
    return torch.complex(re, im)


def test_rotate_zero_phase_and_exact_rotation():
    inter = RotatEInteraction(margin=1.0)
    h = torch.tensor([[1.0, 0.0, 0.0, 2.0]], dtype=DTYPE)  # 1 + 0i, 0 + 2i
    theta = torch.tensor([[math.pi / 2, math.pi]], dtype=DTYPE)
    t = torch.tensor([[0.0, 0.0, 1.0, -2.0]], dtype=DTYPE)  # i·1 = i, -1·2i = -2i
    assert torch.allclose(inter(h, theta, t), torch.tensor([1.0], dtype=DTYPE), atol=1e-12)
    assert torch.allclose(inter(h, torch.zeros_like(theta), h),
                          torch.tensor([1.0], dtype=DTYPE))


def test_pairre_mixed_relations():
    torch.manual_seed(6)
    margin = 3.0
    for p in (1.0, 2.0):
        inter, naive = PairREInteraction(margin, p), naive_pairre(margin, int(p))
        table = rand(3, 2 * D)
        # Repeated and interleaved relations; relation 1 shares r^T with relation 0 but not
        # r^H, relation 2 shares r^H with relation 0 but not r^T.
        table[1, D:] = table[0, D:]
        table[2, :D] = table[0, :D]
        rel = torch.tensor([0, 2, 0, 1, 2, 2, 0, 1])
        r = table[rel]
        Bm = rel.numel()
        h, t, e_all = rand(Bm, D), rand(Bm, D), rand(N, D)
        out = inter.score_tails(h, r, e_all)
        expected = torch.tensor([[naive(h[b], r[b], e_all[n]) for n in range(N)]
                                 for b in range(Bm)], dtype=DTYPE)
        assert torch.allclose(out, expected, atol=ATOL, rtol=0)
        out = inter.score_heads(e_all, r, t)
        expected = torch.tensor([[naive(e_all[n], r[b], t[b]) for n in range(N)]
                                 for b in range(Bm)], dtype=DTYPE)
        assert torch.allclose(out, expected, atol=ATOL, rtol=0)


def test_pairre_is_scale_invariant_in_entities():
    torch.manual_seed(8)
    inter = PairREInteraction()
    h, r, t = rand(B, D), rand(B, 2 * D), rand(B, D)
    assert torch.allclose(inter(h, r, t), inter(3.0 * h, r, 0.5 * t), atol=ATOL)


def test_tucker_batch_norm_dropout_eval_consistency():
    torch.manual_seed(9)
    inter = make_tucker(input_dropout=0.3, hidden_dropout1=0.4, hidden_dropout2=0.5,
                        batch_norm=True)
    # Non-trivial batch-norm statistics and affine parameters.
    for bn in (inter.bn0, inter.bn1):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    inter.eval()
    h, r, e_all = rand(B, D), rand(B, DR_TUCKER), rand(N, D)
    tail = torch.randint(0, N, (B, ))
    scores = inter.score_tails(h, r, e_all)
    # Gathered at the true tail, and for every candidate, equal to forward.
    assert torch.allclose(scores[torch.arange(B), tail], inter(h, r, e_all[tail]), atol=ATOL)
    assert torch.allclose(scores, inter(h[:, None], r[:, None], e_all[None]), atol=ATOL)
    # Deterministic in eval mode (dropouts off).
    assert torch.equal(scores, inter.score_tails(h, r, e_all))
    # The batch norm matters, so the check above is not vacuous.
    plain = make_tucker()
    plain.core.data.copy_(inter.core.data)
    assert not torch.allclose(scores, plain.score_tails(h, r, e_all), atol=1e-3)


def test_tucker_train_mode_is_stochastic():
    torch.manual_seed(10)
    inter = make_tucker(input_dropout=0.3, hidden_dropout1=0.4, hidden_dropout2=0.5,
                        batch_norm=True).train()
    h, r, e_all = rand(B, D), rand(B, DR_TUCKER), rand(N, D)
    assert not torch.equal(inter.score_tails(h, r, e_all), inter.score_tails(h, r, e_all))


def test_tucker_core_orientation():
    # W_{ijk} multiplies h_i, r_j, t_k: a core with a single 1 picks one coordinate of each.
    inter = TuckERInteraction(3, 2).to(DTYPE)
    inter.core.data.zero_()
    inter.core.data[0, 1, 2] = 1.0
    h = torch.tensor([[2.0, 3.0, 5.0]], dtype=DTYPE)
    r = torch.tensor([[7.0, 11.0]], dtype=DTYPE)
    t = torch.tensor([[13.0, 17.0, 19.0]], dtype=DTYPE)
    assert inter(h, r, t).item() == 2.0 * 11.0 * 19.0
    assert inter.score_tails(h, r, t).item() == 2.0 * 11.0 * 19.0
    assert inter.score_heads(h, r, t).item() == 2.0 * 11.0 * 19.0


def _tucker_query_naive(inter, e, r, mask=None, p=0.0, head_side=False):
    # W_r = W x_2 r per row, dropped out elementwise (TuckER's and MoMoK's hidden_dropout1)
    w = torch.einsum('nj,ijk->nik', r, inter.core)
    if mask is not None:
        w = w * mask / (1 - p)
    return torch.einsum('nk,nik->ni' if head_side else 'ni,nik->nk', e, w)


@pytest.mark.parametrize('head_side', [False, True])
def test_tucker_second_dropout_is_on_the_relation_matrix(head_side):
    p, n = 0.5, 6
    inter = TuckERInteraction(4, 3, hidden_dropout1=p).to(DTYPE).train()
    e, r = rand(n, 4), rand(n, 3)
    r[3] = r[1]  # two queries of one relation: each its own dropout mask
    torch.manual_seed(5)
    q = inter.query(e, r, head_side=head_side)
    torch.manual_seed(5)  # the same random stream: the mask of an [n, d, d] tensor
    mask = torch.nn.functional.dropout(torch.ones(n, 4, 4, dtype=DTYPE), p) * (1 - p)
    assert 0 < int((mask == 0).sum()) < mask.numel()
    assert torch.allclose(q, _tucker_query_naive(inter, e, r, mask, p, head_side))
    # the former placement, on the contracted query, is a switch
    old = TuckERInteraction(4, 3, hidden_dropout1=p, dropout_target='query').to(DTYPE).train()
    old.core.data.copy_(inter.core.data)
    torch.manual_seed(5)
    q_old = old.query(e, r, head_side=head_side)
    torch.manual_seed(5)
    keep = torch.nn.functional.dropout(torch.ones(n, 4, dtype=DTYPE), p)
    assert torch.allclose(q_old, _tucker_query_naive(old, e, r, head_side=head_side) * keep)


def test_tucker_relation_matrices_once_per_distinct_relation_same_values_and_gradients():
    inter = TuckERInteraction(4, 3).to(DTYPE)
    emb = torch.nn.Parameter(rand(5, 3))
    rel = torch.tensor([0, 2, 0, 0, 4, 2, 1])
    e = rand(rel.numel(), 4)
    out = inter.query(e, emb[rel])
    out.pow(2).sum().backward()
    grad, core_grad = emb.grad.clone(), inter.core.grad.clone()
    emb.grad = None
    inter.core.grad = None
    ref = _tucker_query_naive(inter, e, emb[rel])
    assert torch.allclose(out, ref)
    ref.pow(2).sum().backward()
    assert torch.allclose(grad, emb.grad) and torch.allclose(core_grad, inter.core.grad)


def test_tucker_xavier_core_init():
    torch.manual_seed(0)
    inter = TuckERInteraction(16, 8, core_init='xavier')
    bound = math.sqrt(6.0 / (16 * 16 + 8))  # fan_in d_e * d_e, fan_out d_r
    assert inter.core.abs().max() <= bound
    assert inter.core.abs().max() > 0.9 * bound  # uniform over the range, not narrower
    uniform = TuckERInteraction(16, 8)
    assert uniform.core.abs().max() > bound  # U(+-1/4) reaches far beyond 0.15


def test_complex_needs_even_width():
    with pytest.raises(ValueError, match='even'):
        ComplExInteraction()(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3))


def test_float32_close_to_float64():
    # The float32 path agrees with float64 up to float32 precision.
    torch.manual_seed(11)
    for name, inter, _, de, dr in CASES:
        h, r, e_all = rand(B, de), rand(B, dr), rand(N, de)
        ref = inter.score_tails(h, r, e_all)
        inter32 = inter.float() if name == 'tucker' else inter
        out = inter32.score_tails(h.float(), r.float(), e_all.float())
        assert out.dtype == torch.float32
        assert torch.allclose(out.double(), ref, atol=1e-4, rtol=1e-4), name
        if name == 'tucker':
            inter.to(DTYPE)


def test_rotate_gradient_is_finite_where_query_and_tail_coincide():
    # A component where h e^{i theta} = t exactly (here h = t = 0 in one coordinate): sqrt'(0)
    # is infinite, and without a floor the gradient is inf * 0 = NaN (seen training NATIVE).
    inter = RotatEInteraction(margin=12.0).to(DTYPE)
    h = torch.tensor([[0.0, 1.0, 0.0, 2.0]], dtype=DTYPE, requires_grad=True)
    t = torch.tensor([[0.0, 3.0, 0.0, -1.0]], dtype=DTYPE, requires_grad=True)
    r = torch.tensor([[0.4, 0.7]], dtype=DTYPE, requires_grad=True)
    score = inter(h, r, t)
    score.backward()
    for x in (h, r, t):
        assert torch.isfinite(x.grad).all()
    # the value is the formula's (the floor changes no square above 1e-30)
    q = torch.polar(torch.ones(2, dtype=DTYPE), r.detach()[0]) * torch.complex(
        h.detach()[0, :2], h.detach()[0, 2:])
    ref = 12.0 - (q - torch.complex(t.detach()[0, :2], t.detach()[0, 2:])).abs().sum()
    assert torch.allclose(score.detach()[0], ref)
