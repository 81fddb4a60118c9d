import copy
import csv
import sys

import pytest

from torch_mmkg import cli
from torch_mmkg.datasets import DATASETS, FakeMMKGDataset
from torch_mmkg.experiment import load_config_file, save_config, train
from torch_mmkg.experiment import tune as tune_module
from torch_mmkg.experiment.tune import check_search_space, trial_config, tune
from torch_mmkg.training import Trainer, TrainingDivergedError
from torch_mmkg.training.callbacks import Callback

pytest.importorskip('yaml')
try:  # imported here, not in a test: Optuna's log handler keeps the stderr it first sees
    import optuna  # noqa: F401
except ImportError:  # pragma: no cover
    optuna = None
needs_optuna = pytest.mark.skipif(optuna is None, reason='optuna is not installed')


@pytest.fixture
def fake(monkeypatch):
    # A registered name resolving to a small synthetic graph keeps the trials fast and offline.
    monkeypatch.setitem(DATASETS, 'fake', lambda root, **kw: FakeMMKGDataset(
        num_entities=40, num_relations=2, num_triples=300, seed=0))


def config(metric='mrr', **search):
    return {'dataset': 'fake', 'model': 'distmult', 'model_args': {'hidden_channels': 8},
            'train': {'epochs': 3, 'eval_every': 1, 'num_negatives': 2, 'batch_size': 64,
                      'device': 'cpu', 'metric': metric},
            # Learning rates from hopeless (1e-5) to good: the median rule has work to do.
            'search': search or {
                'train.lr': {'type': 'float', 'low': 1.0e-5, 'high': 0.5, 'log': True},
                'train.num_negatives': {'type': 'categorical', 'choices': [1, 4]}}}


@needs_optuna
def test_cli_tune_prunes_writes_best_config_and_resumes(fake, tmp_path, capsys):
    path = tmp_path / 'search.yaml'
    save_config(config(), str(path))
    out = tmp_path / 'study'
    args = ['tune', str(path), '--trials', '10', '--out', str(out), '--root', str(tmp_path),
            '--pruner-startup-trials', '2', '--quiet']
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "best trial" in printed and 'best_config.yaml' in printed

    rows = list(csv.DictReader(open(out / 'trials.csv')))
    assert [int(r['number']) for r in rows] == list(range(10))
    states = [r['state'] for r in rows]
    assert states.count('PRUNED') >= 1 and states.count('COMPLETE') >= 1, states
    for r in rows:  # a pruned trial stopped at its pruning epoch; a complete one trained on
        assert int(r['last_epoch']) < 3 if r['state'] == 'PRUNED' else int(r['last_epoch']) == 3
    assert (out / 'trial_0' / 'config.yaml').exists()

    best = max((r for r in rows if r['state'] == 'COMPLETE'), key=lambda r: float(r['value']))
    cfg = load_config_file(str(out / 'best_config.yaml'))
    assert 'search' not in cfg and cfg['train']['test'] is True
    assert cfg['train']['lr'] == pytest.approx(float(best['train.lr']))
    assert cfg['train']['num_negatives'] == int(best['train.num_negatives'])
    assert cfg['model_args'] == {'hidden_channels': 8}
    res = train(cfg, root=str(tmp_path))  # the best config trains as it is, and tests
    assert 'test' in res and res['epochs_trained'] == 3

    # Running again resumes the study: --trials is its total, so two more trials run.
    assert cli.main(args[:3] + ['12'] + args[4:]) == 0
    rows = list(csv.DictReader(open(out / 'trials.csv')))
    assert [int(r['number']) for r in rows] == list(range(12))
    # ... and a study started with another search space is not resumed.
    other = config()
    other['search']['train.lr']['high'] = 0.1
    save_config(other, str(path))
    assert cli.main(args) == 2
    assert 'another config' in capsys.readouterr().err


@needs_optuna
@pytest.mark.parametrize('metric', ['mrr', 'mr'])
def test_best_trial_is_the_best_completed_one(fake, tmp_path, metric):
    study = tune(config(metric), 5, root=str(tmp_path), pruner='none')
    done = [t for t in study.trials if t.state.name == 'COMPLETE']
    assert len(done) == 5
    best = min if metric == 'mr' else max
    assert study.direction.name == ('MINIMIZE' if metric == 'mr' else 'MAXIMIZE')
    assert study.best_value == best(t.value for t in done)
    assert len({t.value for t in done}) > 1  # the comparison means something
    for t in done:  # the value is the best validation of the trial, reported every epoch
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert t.value == best(t.intermediate_values.values())


@needs_optuna
def test_tuning_never_ranks_the_test_split(fake, tmp_path, monkeypatch):
    splits, results = [], []
    evaluate = Trainer.evaluate

    def spy(self, split='test', model_state=None):
        splits.append(split)
        return evaluate(self, split, model_state)

    class Results(Callback):
        def on_fit_end(self, trainer, res):
            results.append(res)

    monkeypatch.setattr(Trainer, 'evaluate', spy)
    cfg = config()
    cfg['train']['test'] = True  # asked for, and still not done while tuning
    tune(cfg, 3, root=str(tmp_path), pruner='none', callbacks=[Results()])
    assert len(results) == 3 and all('test' not in r for r in results)
    assert splits and 'test' not in splits and set(splits) == {'val_clean'}
    assert trial_config(cfg, {'train.lr': 0.1})['train']['test'] is False
    assert cfg['train']['test'] is True and 'search' in cfg  # the caller's config is kept


LR = {'type': 'float', 'low': 1.0e-4, 'high': 1.0e-1, 'log': True}


@pytest.mark.parametrize('search,match', [
    ({'train.lrr': LR}, "train.lrr: 'lrr' is not a training option"),
    ({'optimizer.lr': LR}, "'optimizer.lr' must be SECTION.KEY"),
    ({'lr': LR}, "'lr' must be SECTION.KEY"),
    ({'train.lr': {**LR, 'type': 'uniform'}}, "train.lr: type must be one of"),
    ({'train.lr': {'low': 1e-4, 'high': 1e-1}}, "train.lr: type must be one of"),
    ({'train.lr': [1e-4, 1e-1]}, "train.lr: expected a mapping"),
    ({'train.lr': {**LR, 'low': 0.1}}, r"train.lr: low must be < high"),
    ({'train.lr': {**LR, 'low': 0.5}}, r"train.lr: low must be < high"),
    ({'train.lr': {**LR, 'lo': 1}}, r"train.lr: unknown fields \['lo'\]"),
    ({'train.lr': {'type': 'float', 'low': 0.0, 'high': 1.0, 'log': True}},
     'train.lr: a log scale needs low > 0'),
    ({'train.lr': {'type': 'float', 'low': 0.0, 'high': 1.0}},
     'train.lr: the value 0.0 of its range is invalid: TrainConfig: lr must be > 0'),
    ({'train.num_negatives': {'type': 'categorical', 'choices': []}},
     'train.num_negatives: choices must be a non-empty list'),
    ({'train.num_negatives': {'type': 'categorical', 'choices': [[1]]}},
     'train.num_negatives: a choice must be'),
    ({'train.num_negatives': {'type': 'int', 'low': 1.5, 'high': 8}},
     'train.num_negatives: low must be an integer'),
    ({'train.num_negatives': {'type': 'int', 'low': 1, 'high': 8, 'step': 0}},
     'train.num_negatives: step must be an integer >= 1'),
    ({'train.num_negatives': {'type': 'int', 'low': 0, 'high': 8}},
     'train.num_negatives: the value 0 of its range is invalid'),
    ({'train.test': {'type': 'categorical', 'choices': [True, False]}},
     'train.test: the trials never test'),
    ({}, 'no search section'),
])
def test_search_space_is_checked_before_any_trial(fake, tmp_path, search, match):
    cfg = config(**search) if search else {**config(), 'search': {}}
    with pytest.raises(ValueError, match=match):
        check_search_space(cfg)
    with pytest.raises(ValueError, match=match):  # before optuna is needed or a trial runs
        tune(cfg, 10, out=str(tmp_path / 'study'), root=str(tmp_path))
    assert not (tmp_path / 'study').exists()


def test_search_space_checks_model_arguments_and_the_config(fake, tmp_path, capsys):
    cfg = config(**{'model_args.marginn': {'type': 'float', 'low': 1.0, 'high': 9.0}})
    cfg['model'] = 'ikrl'  # takes no **kwargs: its arguments are known
    with pytest.raises(ValueError, match="model_args.marginn: ikrl takes no argument"):
        check_search_space(cfg)
    cfg['search'] = {'model_args.margin': {'type': 'float', 'low': 1.0, 'high': 9.0}}
    spec = check_search_space(cfg)
    assert spec == {'model_args.margin': {'type': 'float', 'low': 1.0, 'high': 9.0,
                                          'log': False, 'step': None}}
    bad = config()
    bad['train']['optimiser'] = 'adam'
    with pytest.raises(ValueError, match='optimiser'):
        check_search_space(bad)
    # The command line names the key in one line and exits with 2.
    path = tmp_path / 'bad.yaml'
    save_config(config(**{'train.lr': {**LR, 'low': 1.0}}), str(path))
    assert cli.main(['tune', str(path), '--trials', '10']) == 2
    assert 'train.lr: low must be < high' in capsys.readouterr().err


def test_trial_config_sets_nested_values():
    cfg = config()
    cfg['train']['regime_args'] = {'a': 1}
    out = trial_config(cfg, {'train.regime_args.b': 2, 'model_args.hidden_channels': 4},
                       test=True)
    assert out['train']['regime_args'] == {'a': 1, 'b': 2}
    assert out['model_args']['hidden_channels'] == 4 and out['train']['test'] is True
    assert cfg['train']['regime_args'] == {'a': 1} and cfg['model_args']['hidden_channels'] == 8


@needs_optuna
def test_same_seed_same_study(fake, tmp_path):

    def run(seed):
        study = tune(config(), 4, root=str(tmp_path), seed=seed, pruner='none')
        return [t.params for t in study.trials], [t.value for t in study.trials]

    first = run(3)
    assert run(3) == first
    assert run(4)[0] != first[0]


@needs_optuna
def test_diverged_trial_fails_and_the_study_goes_on(fake, tmp_path, monkeypatch):
    from torch_mmkg.experiment import run as run_module
    real = run_module.train

    def train_or_diverge(cfg, *args, **kwargs):
        if cfg['train']['lr'] > 0.01:
            raise TrainingDivergedError('training diverged: planted')
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(run_module, 'train', train_or_diverge)
    cfg = config(**{'train.lr': {'type': 'categorical', 'choices': [0.001, 0.1]}})
    study = tune(cfg, 6, out=str(tmp_path / 'study'), root=str(tmp_path), pruner='none')
    states = {t.params['train.lr']: set() for t in study.trials}
    for t in study.trials:
        states[t.params['train.lr']].add(t.state.name)
    assert states == {0.001: {'COMPLETE'}, 0.1: {'FAIL'}}
    failed = [t for t in study.trials if t.state.name == 'FAIL']
    assert failed[0].user_attrs['error'] == 'training diverged: planted'
    assert load_config_file(str(tmp_path / 'study' / 'best_config.yaml'))['train']['lr'] == 0.001


def test_missing_optuna_names_the_extra(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'optuna', None)  # import optuna raises ImportError
    with pytest.raises(ImportError, match=r"pip install torch_mmkg\[tune\]"):
        tune(copy.deepcopy(config()), 2, root=str(tmp_path))
    path = tmp_path / 'search.yaml'
    save_config(config(), str(path))
    assert cli.main(['tune', str(path), '--trials', '2']) == 2
    assert 'torch_mmkg[tune]' in capsys.readouterr().err


def test_parser_has_help_for_every_flag():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == 'command').choices['tune']
    for action in sub._actions:
        assert action.help, action.dest
    args = parser.parse_args(['tune', 'x.yaml', '--trials', '3'])
    assert (args.trials, args.pruner, args.seed, args.out, args.timeout) == (
        3, 'median', 0, None, None)
    assert tune_module.add_tune_parser is not None
