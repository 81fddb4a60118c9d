import copy

import pytest
import torch
import torch.nn.functional as F

from torch_mmkg.data import KnownTriples, get_triples
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.nn import MoMoK
from torch_mmkg.testing import withCUDA
from torch_mmkg.training import TrainConfig, Trainer

N, R, D = 20, 3, 4


pytestmark = pytest.mark.usefixtures('single_thread')


def make(**kwargs):
    torch.manual_seed(0)
    feats = {'text': torch.randn(N, 5), 'image': torch.randn(N, 3)}
    masks = {'text': torch.arange(N) % 3 != 0, 'image': torch.arange(N) % 2 == 0}
    model = MoMoK(N, R, D, feats, masks, **kwargs).double()
    with torch.no_grad():  # non-trivial gates and temperatures
        for experts in model.experts.values():
            experts.w_gate.normal_()
            experts.w_noise.normal_()
        if model.rel_temperature is not None:
            model.rel_temperature.normal_()
    return model, feats, masks


def queries(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    e = torch.randint(0, N, (n, ), generator=g)
    r = torch.randint(0, 2 * R, (n, ), generator=g)
    target = (torch.rand(n, N, generator=g) < 0.2).double()
    return e, r, target


# A transcription of the paper's equations, entity by entity ##################################

def naive_modality(model, m, e, tau):
    ex = model.experts[m]
    x = model.node_emb.weight[e] if m == 'structure' else getattr(model.representation, f'x_{m}')[e]
    values = [(x - ex.bias[i]) @ ex.weight[i] for i in range(model.num_experts)]
    gates = torch.softmax((x @ ex.w_gate) / tau, dim=0)
    return sum(g * v for g, v in zip(gates, values)), gates


def naive_fuse(fusion, embs, avail):
    out = 0
    for h in range(fusion.num_heads):
        proj = [torch.relu(x @ fusion.weight[h, s] + fusion.bias[h, s])
                for s, x in enumerate(embs)]
        logits = torch.stack([p @ fusion.attention if fusion.adaptive else p.new_zeros(())
                              for p in proj])
        logits = torch.where(avail, logits, torch.full_like(logits, float('-inf')))
        alpha = torch.softmax(logits, dim=0)
        out = out + sum(a * p for a, p, ok in zip(alpha, proj, avail) if ok)
    return out


def naive_tucker(tucker, h, r, t):
    # eval mode: BatchNorm with its running statistics, no dropout
    q = torch.einsum('i,ijk,j->k', tucker.bn0(h[None])[0], tucker.core, r)
    return tucker.bn1(q[None])[0] @ t


def naive_scores(model, e, r):
    r"""Per scorer: the [N] logits of the query (e, r, ?) and the [N] bool of which
    candidates it judges (all False when the query lacks that modality)."""
    tau = torch.sigmoid(model.rel_temperature[r]) if model.rel_temperature is not None else 1
    has = {m: (True if m == 'structure' or not model.mask_missing
               else bool(getattr(model.representation, f'mask_{m}')[e])) for m in model.slots}
    cand_has = {m: (torch.ones(N, dtype=torch.bool) if m == 'structure' or not model.mask_missing
                    else getattr(model.representation, f'mask_{m}')) for m in model.slots}
    q = {m: naive_modality(model, m, e, tau)[0] for m in model.slots}
    c = {m: torch.stack([naive_modality(model, m, n, 1.0)[0] for n in range(N)])
         for m in model.slots}
    rel = {m: model.rel_emb[s, r] for s, m in enumerate(model.slots)}
    out = {}
    for s in model.active_scorers:
        if s == 'joint':
            avail = torch.tensor([has[m] for m in model.slots])
            qj = naive_fuse(model.entity_fusion, [q[m] for m in model.slots], avail)
            rj = naive_fuse(model.relation_fusion, [rel[m] for m in model.slots],
                            torch.ones(len(model.slots), dtype=torch.bool))
            cj = torch.stack([naive_fuse(model.entity_fusion, [c[m][n] for m in model.slots],
                                         torch.stack([cand_has[m][n] for m in model.slots]))
                              for n in range(N)])
            logits = torch.stack([naive_tucker(model.tucker[s], qj, rj, cj[n])
                                  for n in range(N)])
            judged = torch.ones(N, dtype=torch.bool)
        else:
            logits = torch.stack([naive_tucker(model.tucker[s], q[s], rel[s], c[s][n])
                                  for n in range(N)])
            judged = cand_has[s] & has[s]
        out[s] = (logits, judged)
    return out


@pytest.mark.parametrize('kwargs', [{}, {'adaptive_fusion': False},
                                    {'relation_temperature': False}, {'mask_missing': False}])
def test_loss_and_scores_equal_the_equations(kwargs):
    model, _, _ = make(club_weight=0.0, objective='bce', **kwargs)  # the authors' code
    model.eval()  # no noise, no dropout
    e, r, target = queries()
    loss = model.loss_1n(e, r, target)
    scores = model.score_tails(e, r)
    eps = model.loss_fn.label_smoothing
    naive_loss = 0
    naive = []
    for b in range(e.numel()):
        naive.append(naive_scores(model, int(e[b]), int(r[b])))
    for s in model.scorers:
        num = den = 0
        for b in range(e.numel()):
            logits, judged = naive[b][s]
            y = (1 - eps) * target[b] + 1.0 / N
            bce = F.binary_cross_entropy_with_logits(logits, y, reduction='none')
            num = num + bce[judged].sum()
            den = den + judged.sum()
        if den:  # the mean over the (query, candidate) pairs the scorer judges
            naive_loss = naive_loss + num / den
    assert torch.allclose(loss, naive_loss, atol=1e-10)
    # The ensemble: minus the mean over judging scorers of sigmoid(-S_m), i.e. P - 1.
    for b in range(e.numel()):
        p = torch.stack([torch.sigmoid(lg) * j for lg, j in naive[b].values()]).sum(0)
        cnt = torch.stack([j for _, j in naive[b].values()]).sum(0)
        assert torch.allclose(scores[b], p / cnt - 1, atol=1e-10)


def test_forward_matches_score_tails_and_heads():
    model = make()[0].eval()
    e, r, _ = queries(8)
    t = torch.randint(0, N, (8, ), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tails = model.score_tails(e, r)
        assert torch.allclose(model(e, r, t), tails.gather(1, t[:, None]).view(-1))
        fwd = r < R
        heads = model.score_heads(r[fwd], t[fwd])  # (?, r, t) is (t, r^-1, ?)
        assert torch.allclose(heads, model.score_tails(t[fwd], r[fwd] + R))


def test_missing_features_are_never_scored():
    model, _, masks = make()
    model.eval()
    e, r, target = queries()
    with torch.no_grad():
        before, loss = model.score_tails(e, r), model.loss_1n(e, r, target)
        x = model.representation.x_text
        x[~masks['text']] = 1e3 * torch.randn(int((~masks['text']).sum()), 5).double()
        assert torch.allclose(model.score_tails(e, r), before)
        assert torch.allclose(model.loss_1n(e, r, target), loss)
    plain = make(mask_missing=False)[0].eval()
    with torch.no_grad():
        before = plain.score_tails(e, r)
        plain.representation.x_text[~masks['text']] += 5.0
        assert not torch.allclose(plain.score_tails(e, r), before)


def test_a_candidate_no_scorer_can_judge_ranks_last():
    model = make(scorers=['text'])[0].eval()
    assert model.slots == ['text'] and list(model.tucker) == ['text']
    e = torch.tensor([1, 3])  # 1 has text, 3 does not
    with torch.no_grad():
        scores = model.score_tails(e, torch.tensor([0, 0]))
    lacking = ~model.representation.mask_text
    assert (scores[0, lacking] == -1).all() and (scores[0, ~lacking] > -1).all()
    assert (scores[1] == -1).all()  # the query itself lacks text: no scorer judges


def test_relation_temperature_changes_the_gate():
    model = make()[0].train()
    e = torch.arange(N)
    x = model.representation.x_text[e]
    has = model.representation.mask_text
    for rel in (0, 4):
        _, _, gates, _ = model.modality_embeddings(e, torch.full((N, ), rel), noise=False)
        tau = torch.sigmoid(model.rel_temperature[rel])
        expected = torch.softmax((x @ model.experts['text'].w_gate) / tau, dim=-1)
        assert torch.allclose(gates[has, model.slots.index('text')], expected[has])
        assert (gates[~has, model.slots.index('text')] == 0).all()  # skipped: no text
    g0 = model.modality_embeddings(e, torch.zeros(N, dtype=torch.long), noise=False)[2]
    g4 = model.modality_embeddings(e, torch.full((N, ), 4), noise=False)[2]
    assert not torch.allclose(g0, g4)
    # candidates (no relation) are gated at temperature 1
    g = model.modality_embeddings(e, None, noise=False)[2][:, model.slots.index('text')]
    assert torch.allclose(g[has], torch.softmax(x @ model.experts['text'].w_gate, dim=-1)[has])
    # without relation temperatures the relation does not matter
    flat = make(relation_temperature=False)[0]
    assert flat.rel_temperature is None
    assert torch.allclose(flat.modality_embeddings(e, torch.zeros(N, dtype=torch.long),
                                                   noise=False)[2],
                          flat.modality_embeddings(e, torch.full((N, ), 4), noise=False)[2])
    # and the temperature learns
    model.loss_1n(*queries()).backward()
    assert model.rel_temperature.grad.abs().sum() > 0


def test_noise_is_random_in_training_only():
    e, r = torch.arange(N), torch.zeros(N, dtype=torch.long)
    noisy = make()[0].train()
    g1 = noisy.modality_embeddings(e, r)[2]
    g2 = noisy.modality_embeddings(e, r)[2]
    assert not torch.allclose(g1, g2)
    noisy.eval()
    assert torch.equal(noisy.modality_embeddings(e, r)[2], noisy.modality_embeddings(e, r)[2])
    quiet = make(noisy_gating=False)[0].train()
    assert torch.equal(quiet.modality_embeddings(e, r)[2], quiet.modality_embeddings(e, r)[2])
    # the noise scale is learnt through softplus(x W_noise)
    noisy.train()
    noisy.loss_1n(*queries()).backward()
    assert noisy.experts['text'].w_noise.grad.abs().sum() > 0
    assert quiet.experts['text'].w_noise.grad is None


def test_exid_steps_touch_only_their_own_parameters():
    model = make(club_weight=1.0)[0].train()
    estimators = {id(p) for p in model.auxiliary_parameters()}
    assert estimators and len(estimators) == len(list(model.estimators.parameters()))
    # the main loss sends gradients to the experts but none to the CLUB networks
    loss = model.loss_1n(*queries())
    loss.backward()
    assert all(p.grad is None for p in model.estimators.parameters())
    grad_with = model.experts['text'].weight.grad.clone()
    plain = make(club_weight=0.0)[0].train()
    torch.manual_seed(5)
    plain.loss_1n(*queries()).backward()
    torch.manual_seed(5)
    model.zero_grad()
    model.loss_1n(*queries()).backward()
    assert not torch.allclose(model.experts['text'].weight.grad,
                              plain.experts['text'].weight.grad)
    assert grad_with.abs().sum() > 0
    # the estimator step moves the CLUB networks and nothing else
    main_before = {n: p.detach().clone() for n, p in model.named_parameters()
                   if id(p) not in estimators}
    est_before = [p.detach().clone() for p in model.auxiliary_parameters()]
    opt = torch.optim.Adam(model.auxiliary_parameters(), lr=0.1)
    model.zero_grad()
    model.auxiliary_loss(queries()[0]).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n in main_before)
    opt.step()
    assert all(torch.equal(p, main_before[n]) for n, p in model.named_parameters()
               if n in main_before)
    assert all(not torch.equal(p, b) for p, b in zip(model.auxiliary_parameters(), est_before))


def test_club_loss_per_pair_networks_is_the_mean_over_expert_pairs():
    model = make(club_weight=1.0, club_pairs='per_pair')[0]
    E, V, _, mask = model.modality_embeddings(torch.arange(N))
    loss = model.club_loss(V, mask)
    expected = 0
    for s, m in enumerate(model.slots):
        v = V[:, s][mask[:, s]]
        for k, (i, j) in enumerate(model.pairs):
            expected = expected + model.estimators[m][k](v[:, i], v[:, j])
    assert len(model.pairs) == 6 and len(model.estimators['text']) == 6
    assert torch.allclose(loss, expected / 9)


def test_club_loss_all_pairs_is_the_papers_eq8_with_one_network_per_modality():
    model = make(club_weight=1.0, club_pairs='all')[0]
    E, V, _, mask = model.modality_embeddings(torch.arange(N))
    loss = model.club_loss(V, mask)
    expected = 0
    for s, m in enumerate(model.slots):
        v = V[:, s][mask[:, s]]
        assert len(model.estimators[m]) == 1
        for i in range(3):
            for j in range(3):
                if i != j:
                    expected = expected + model.estimators[m][0](v[:, i], v[:, j])
    assert torch.allclose(loss, expected / 9)


def test_club_loss_random_pair_is_the_authors_one_pair_per_step_mean_over_modalities():
    model = make(club_weight=1.0)[0]  # the default: the authors' code
    assert model.club_pairs == 'random'
    E, V, _, mask = model.modality_embeddings(torch.arange(N))
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        loss = model.club_loss(V, mask)
        i, j = model._club_pair
        assert i != j
        seen.add((i, j))
        expected = sum(model.estimators[m][0](V[:, s][mask[:, s]][:, i],
                                              V[:, s][mask[:, s]][:, j])
                       for s, m in enumerate(model.slots)) / len(model.slots)
        assert torch.allclose(loss, expected)
        # the estimators' step fits the same pair
        aux = model.auxiliary_loss(torch.arange(N))
        with torch.no_grad():
            vals = torch.stack([model.experts[m].experts(model.representation.slot_input(m))
                                for m in model.slots], dim=1)
        ref = torch.stack([model.estimators[m][0].learning_loss(
            vals[:, s][mask[:, s]][:, i], vals[:, s][mask[:, s]][:, j])
            for s, m in enumerate(model.slots)]).mean()
        assert torch.allclose(aux, ref)
    # 12 draws of 6 ordered pairs: all the same pair has probability 6 / 6**12
    assert len(seen) > 1


def test_joint_training_off_trains_the_mean_logit():
    model = make(joint_training=False, club_weight=0.0, objective='bce')[0].eval()
    e, r, target = queries()
    loss = model.loss_1n(e, r, target)
    scores = model.score_tails(e, r)
    naive = [naive_scores(model, int(e[b]), int(r[b])) for b in range(e.numel())]
    mean = torch.stack([sum(lg * j for lg, j in n.values()) / sum(j for _, j in n.values())
                        for n in naive])
    assert torch.allclose(scores, mean, atol=1e-10)
    y = 0.9 * target + 1.0 / N
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(mean, y), atol=1e-10)


def test_use_scorers_and_validation():
    model = make()[0].eval()
    e, r, _ = queries()
    with torch.no_grad():
        full = model.score_tails(e, r)
        with model.use_scorers(['structure']):
            only = model.score_tails(e, r)
        assert torch.allclose(model.score_tails(e, r), full)
        naive = [naive_scores(model, int(e[b]), int(r[b]))['structure'][0]
                 for b in range(e.numel())]
        assert torch.allclose(only, torch.sigmoid(torch.stack(naive)) - 1, atol=1e-10)
    with pytest.raises(ValueError, match='trained ones'):
        with make(scorers=['structure'])[0].use_scorers(['text']):
            pass
    with pytest.raises(ValueError, match='scorers must be distinct names'):
        make(scorers=['audio'])
    with pytest.raises(ValueError, match="'joint' is a reserved name"):
        MoMoK(N, R, D, {'joint': torch.randn(N, 2)})
    with pytest.raises(ValueError, match="'text' contain NaN"):
        MoMoK(N, R, D, {'text': torch.full((N, 2), float('nan'))})
    with pytest.raises(ValueError, match='club_weight'):
        MoMoK(N, R, D, club_weight=-1.0)
    with pytest.raises(ValueError, match=r'targets must be \[2, 20\]'):
        model.loss_1n(e[:2], r[:2], torch.zeros(2, N + 1))
    # negative sampling addresses the R relations (inverses are applied internally)
    with pytest.raises(ValueError, match=r'relation id \d+ .* outside \[0, 3\)'):
        model.loss(e, r + R, e)


def test_structure_only_model():
    model = MoMoK(N, R, D).double()
    assert model.slots == ['structure'] and model.modalities == []
    assert list(model.scorers) == ['structure', 'joint']
    model.loss_1n(*queries()).backward()


def test_learns_a_planted_graph():
    # relation 0 maps i -> i + 1, relation 1 maps i -> i + 5 (mod 20); text is noise, with holes
    i = torch.arange(20)
    h, r, t = torch.cat([i, i]), torch.cat([torch.zeros(20), torch.ones(20)]).long(), \
        torch.cat([(i + 1) % 20, (i + 5) % 20])
    known = KnownTriples(h, r, t, 20, 2)
    torch.manual_seed(0)
    model = MoMoK(20, 2, 16, {'text': torch.randn(20, 6)}, {'text': i % 4 != 0},
                  input_dropout=0.0, hidden_dropout1=0.0, hidden_dropout2=0.0)
    assert model.test(h, r, t, known=known, log=False)[1] < 0.3
    loader = model.loader_1n(h, r, t, batch_size=80, generator=torch.Generator().manual_seed(0))
    aux = {id(p) for p in model.auxiliary_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if id(p) not in aux], lr=0.02)
    for _ in range(150):
        model.train()
        for batch in loader:
            opt.zero_grad()
            model.loss_1n(*batch).backward()
            opt.step()
    mr, mrr, _ = model.test(h, r, t, known=known, log=False)
    assert mrr > 0.95 and mr < 1.2


def test_learns_with_the_trainer():
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4,
                           num_triples=600, modalities={'image': 8, 'text': 6}, seed=1)[0]
    torch.manual_seed(0)
    model = MoMoK.from_data(data, 16, input_dropout=0.0, hidden_dropout1=0.0,
                            hidden_dropout2=0.0)
    known = KnownTriples.from_data(data)
    test = get_triples(data, 'test')
    before = model.test(*test, known=known, log=False)[1]
    est_before = [p.detach().clone() for p in model.auxiliary_parameters()]
    trainer = Trainer(model, data, TrainConfig(epochs=30, batch_size=64, lr=0.01,
                                               eval_every=30, progress=False, test=False,
                                               device='cpu'))
    main = {id(p) for g in trainer.optimizer.param_groups for p in g['params']}
    aux = {id(p) for p in model.auxiliary_parameters()}
    assert trainer.one_to_n and trainer.auxiliary_optimizer is not None
    assert not main & aux and main | aux == {id(p) for p in model.parameters()}
    trainer.fit()
    after = model.test(*test, known=known, log=False)[1]
    assert after > before + 0.05, (before, after)
    assert all(not torch.equal(p, b) for p, b in zip(model.auxiliary_parameters(), est_before))


def test_trainer_resumes_bit_identically(tmp_path):
    data = FakeMMKGDataset(num_entities=30, num_relations=2, num_clusters=3,
                           num_triples=150, modalities={'text': 4}, seed=2)[0]

    def run(out, stop=None):
        torch.manual_seed(0)
        model = MoMoK.from_data(data, 8)
        cfg = TrainConfig(epochs=4, batch_size=32, eval_every=2, checkpoint_every=1,
                          progress=False, device='cpu', test=False)
        trainer = Trainer(model, data, cfg, out_dir=str(out))
        trainer.fit(stop_after_epoch=stop)
        return trainer

    full = run(tmp_path / 'a')
    run(tmp_path / 'b', stop=2)
    torch.manual_seed(123)  # resuming must not depend on the global state
    model = MoMoK.from_data(data, 8)
    cfg = copy.deepcopy(full.config)
    resumed = Trainer(model, data, cfg, out_dir=str(tmp_path / 'b'))
    resumed.fit(resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and a['_extra_state'] == b['_extra_state']
    for n in a:
        if n != '_extra_state':
            assert torch.equal(a[n], b[n]), n


@withCUDA
def test_runs_on_every_device(device):
    cpu = make()[0].eval()
    model = copy.deepcopy(cpu).to(device)
    e, r, target = queries()
    with torch.no_grad():
        assert torch.allclose(model.score_tails(e.to(device), r.to(device)).cpu(),
                              cpu.score_tails(e, r), atol=1e-10)
    model.train()
    loss = model.loss_1n(e.to(device), r.to(device), target.to(device))
    loss.backward()
    assert loss.device.type == device.type
    assert model.auxiliary_loss(e.to(device)).device.type == device.type


def test_total_loss_adds_lambda_times_club():
    model = make(club_weight=0.5)[0].eval()  # eval: no gate noise, no dropout
    e, r, target = queries()
    total = model.loss_1n(e, r, target)
    idx = torch.unique(e)
    _, V, _, mask = model.modality_embeddings(idx)
    club = model.club_loss(V, mask)
    model.club_weight = 0.0
    kgc = model.loss_1n(e, r, target)
    assert float(club.detach()) != 0
    assert torch.allclose(total, kgc + 0.5 * club, atol=1e-10)


def test_default_objective_is_the_papers_softmax_cross_entropy():
    from torch_mmkg.nn import BCELoss, SoftmaxCrossEntropyLoss
    from torch_mmkg.testing.cases import naive_one_to_n_loss
    model = make(club_weight=0.0)[0].eval()
    assert type(model.loss_fn) is SoftmaxCrossEntropyLoss  # Eqs. 5-6
    assert model.loss_fn.label_smoothing == 0.1
    assert type(make(objective='bce')[0].loss_fn) is BCELoss  # the authors' code
    with pytest.raises(ValueError, match='objective'):
        make(objective='hinge')
    # the loss: per scorer, the softmax cross-entropy over the candidates it judges
    e, r, target = queries()
    with torch.no_grad():
        loss = model.loss_1n(e, r, target)
        views = model.score_queries(e, r).views
    want = sum(naive_one_to_n_loss(model.loss_fn, logits, target if rows is None else
                                   target[rows], weight)
               for rows, logits, weight in views if logits.size(0))
    assert float(loss) == pytest.approx(want, rel=1e-9)


def test_a_view_only_one_query_has_trains():
    # Only entity 3 has text: in a batch where it is the only query with text, the text
    # scorer sees one row, which batch normalisation cannot normalise by batch statistics
    # (it raised "Expected more than 1 value per channel"); that row is normalised by the
    # running statistics, as at evaluation, which are not updated by it.
    torch.manual_seed(0)
    model = MoMoK(N, R, D, {'text': torch.randn(N, 5)}, {'text': torch.arange(N) == 3})
    e, r = torch.tensor([3, 1, 2]), torch.tensor([0, 1, 0])
    target = torch.zeros(3, N)
    target[:, 0] = 1.0
    bn = model.tucker['text'].bn0
    before = bn.running_mean.clone()
    loss = model.loss_1n(e, r, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.equal(bn.running_mean, before)
    one = torch.randn(1, D)
    bn_eval = torch.nn.functional.batch_norm(one, bn.running_mean, bn.running_var, bn.weight,
                                             bn.bias, training=False, eps=bn.eps)
    assert torch.allclose(model.tucker['text']._norm(bn, one), bn_eval)


def test_initialisation_follows_the_authors_code_by_default():
    torch.manual_seed(0)
    feats = {'text': torch.randn(N, 300)}
    model = MoMoK(N, 10, 32, feats)
    w = model.experts['text'].weight
    # 3 * 300 * 32 normal draws: the sample std is within 3% of 0.02 (std error ~0.8%)
    assert abs(float(w.std()) - 0.02) < 0.02 * 0.03
    eps = model.rel_temperature.detach()
    assert eps.abs().max() > 0 and abs(float(eps.std()) - 1.0) < 0.35  # 20 N(0, 1) draws
    assert model.relation_channels == 256 and model.rel_emb.size(-1) == 256
    core = model.tucker['text'].core
    assert core.shape == (32, 256, 32)
    assert core.abs().max() <= (6.0 / (32 * 32 + 256))**0.5
    assert isinstance(model.representation.x_text, torch.nn.Parameter)
    old = MoMoK(N, 10, 32, feats, init='library', finetune_features=False)
    assert abs(float(old.experts['text'].weight.std()) - 300**-0.5) < 300**-0.5 * 0.03
    assert not old.rel_temperature.any() and old.relation_channels == 32
    assert 'x_text' in dict(old.representation.named_buffers())
