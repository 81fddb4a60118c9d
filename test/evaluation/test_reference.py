r"""The answer-frequency reference rows equal a brute-force count, and rank through the
evaluator with the realistic tie policy."""
import pytest
import torch

from torch_mmkg.data import KnownTriples
from torch_mmkg.evaluation import AnswerFrequency, RankingEvaluator

N, R = 7, 3


def triples():
    # tails of relation 0: entity 2 three times, entity 5 once; of relation 1: entity 5 twice
    h = torch.tensor([0, 1, 3, 4, 0, 6, 2])
    r = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    t = torch.tensor([2, 2, 2, 5, 5, 5, 1])
    return h, r, t


@pytest.mark.parametrize('per_relation', [True, False])
def test_scores_are_answer_counts(per_relation):
    h, r, t = triples()
    model = AnswerFrequency(N, R, h, r, t, per_relation=per_relation)
    qr = torch.tensor([0, 1, 2, 0])
    tails, heads = model.score_tails(torch.zeros(4), qr), model.score_heads(qr, torch.zeros(4))
    for b, rel in enumerate(qr.tolist()):
        for e in range(N):
            keep = (r == rel) if per_relation else torch.ones_like(r, dtype=torch.bool)
            assert tails[b, e] == int(((t == e) & keep).sum())
            assert heads[b, e] == int(((h == e) & keep).sum())


def test_realistic_ranks_of_ties():
    h, r, t = triples()
    model = AnswerFrequency(N, R, h, r, t)
    ev = RankingEvaluator(None, sides=('tail', ), ks=(1, ))
    # (0, 0, ?): entity 2 scores 3, entity 5 scores 1, five entities score 0
    res = ev.evaluate(model, torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]),
                      torch.tensor([2, 5, 6]))
    # realistic rank = (optimistic + pessimistic) / 2: 1, 2, and (3 + 7) / 2 = 5
    assert res.metrics('realistic', 'tail')['mrr'] == pytest.approx((1 + 1 / 2 + 1 / 5) / 3)
    # filtered: knowing (0, 0, 2), entity 5 ranks first
    known = KnownTriples(torch.tensor([0]), torch.tensor([0]), torch.tensor([2]), N, R)
    res = RankingEvaluator(known, sides=('tail', ), ks=(1, )).evaluate(
        model, torch.tensor([0]), torch.tensor([0]), torch.tensor([5]))
    assert res.metrics('realistic', 'tail')['mrr'] == pytest.approx(1.0)
