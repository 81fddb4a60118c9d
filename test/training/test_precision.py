r"""Mixed precision: bf16 autocast for the training forward, float32 parameters and an exact
float32 ranking."""
import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.nn import NATIVE, RotatE
from torch_mmkg.training import TrainConfig, Trainer


def _data():
    return FakeMMKGDataset(num_entities=40, num_relations=3, num_triples=300,
                           modalities={'image': 6, 'text': 4}, seed=0)[0]


# autocast lowers matrix products (NATIVE's encoders) and leaves elementwise ones (RotatE's
# rotation and distance) in float32
@pytest.mark.parametrize('build,lowered', [(lambda d: RotatE(40, 3, 8), False),
                                           (lambda d: NATIVE.from_data(d, 8), True)])
def test_bf16_trains_in_float32_and_ranks_in_float32(build, lowered, single_thread):
    data = _data()
    runs = {}
    for precision in ('fp32', 'bf16'):
        torch.manual_seed(0)
        model = build(data)
        cfg = TrainConfig(epochs=2, batch_size=64, num_negatives=4, eval_every=1,
                          progress=False, precision=precision, seed=0, device='cpu')
        trainer = Trainer(model, data, cfg)
        seen = []
        orig = trainer.regime.loss

        def spy(m, b):
            out = orig(m, b)
            seen.append(torch.is_autocast_enabled('cpu'))
            return out

        trainer.regime.loss = spy
        res = trainer.fit()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert set(seen) == {precision == 'bf16'}  # the forward, and only it, under autocast
        runs[precision] = (res, trainer)
    a, b = runs['fp32'][0], runs['bf16'][0]
    # bfloat16 keeps 8 bits of mantissa: a mean loss over a batch agrees to ~1e-2
    assert b['history'][0]['loss'] == pytest.approx(a['history'][0]['loss'], rel=2e-2)
    assert (a['history'][0]['loss'] != b['history'][0]['loss']) == lowered
    # evaluation is float32 whatever the training precision: the test ranks equal those of
    # the evaluator run by hand outside any autocast
    res, trainer = runs['bf16']
    again = trainer.evaluate('test').metrics('realistic', 'both')
    assert again['mrr'] == pytest.approx(res['test']['realistic']['both']['mrr'], abs=0)


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        TrainConfig(precision='fp16')
