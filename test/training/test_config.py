import pytest

from torch_mmkg.registry import Registry
from torch_mmkg.training import TrainConfig
from torch_mmkg.training.config import OPTIMIZERS, REGIMES, SAMPLING_STRATEGIES


@pytest.mark.parametrize('spelling,canonical', [
    ('negative_sampling', 'negative_sampling'), ('Negative-Sampling', 'negative_sampling'),
    ('NS', 'negative_sampling'), ('negatives', 'negative_sampling'), ('1-n', '1-n'),
    ('1N', '1-n'), ('one_to_n', '1-n'), ('One-To-N', '1-n'), (None, None)])
def test_regime_names(spelling, canonical):
    assert TrainConfig(regime=spelling).regime == canonical


def test_optimizer_and_sampling_names():
    cfg = TrainConfig(optimizer='AdamW', sampling='BERNOULLI')
    assert (cfg.optimizer, cfg.sampling) == ('adamw', 'bernoulli')
    assert cfg.to_dict()['optimizer'] == 'adamw'  # what checkpoints and configs save
    assert TrainConfig(optimizer='Ada_Grad').optimizer == 'adagrad'


def test_registries():
    assert isinstance(REGIMES, Registry)
    assert REGIMES.names() == ['negative_sampling', '1-n', 'kbgan', 'mans', 'mmrns']
    assert REGIMES.aliases('ns') == ('ns', 'negatives')
    assert REGIMES.aliases('1-n') == ('one_to_n', 'kvsall')  # '1n' is '1-n' normalised
    assert 'KvsAll' in REGIMES and 'kvsone' not in REGIMES
    assert OPTIMIZERS.names() == ['adam', 'adamw', 'adagrad', 'sgd']
    assert SAMPLING_STRATEGIES.names() == ['uniform', 'bernoulli']


@pytest.mark.parametrize('kwargs,message', [
    ({'regime': 'one-to-all'}, "TrainConfig: unknown regime 'one-to-all'; choose from "
                               "['1-n', 'kbgan', 'mans', 'mmrns', 'negative_sampling']"),
    ({'regime': 'negative'}, "did you mean 'negative_sampling'?"),
    ({'optimizer': 'adan'}, "TrainConfig: unknown optimizer 'adan'; choose from "
                            "['adagrad', 'adam', 'adamw', 'sgd']; did you mean 'adam'?"),
    ({'sampling': 'bernouli'}, "TrainConfig: unknown sampling strategy 'bernouli'; choose "
                               "from ['bernoulli', 'uniform']; did you mean 'bernoulli'?"),
    ({'optimizer': 3}, "TrainConfig: optimizer must be a string, got 3"),
])
def test_unknown_names(kwargs, message):
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)


def test_resume_compares_canonical_names():
    saved = TrainConfig(regime='1-n', optimizer='adam').to_dict()
    assert TrainConfig(regime='ONE_TO_N', optimizer='Adam').resume_conflicts(saved) == {}
    assert TrainConfig(regime='ns').resume_conflicts(saved) == {
        'regime': ('1-n', 'negative_sampling')}
