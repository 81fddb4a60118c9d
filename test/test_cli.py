import json
import os
import os.path as osp
import re

import pytest

from torch_mmkg import cli
from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.testing import withMirror


def test_list(capsys):
    assert cli.main(['list']) == 0
    out = capsys.readouterr().out
    assert 'rotate' in out and 'MKG-W' in out


def test_flags_override_yaml(tmp_path):
    pytest.importorskip('yaml')
    cfg = tmp_path / 'c.yaml'
    cfg.write_text('dataset: MKG-Y\nmodel: transe\nmodel_args: {hidden_channels: 32, '
                   'margin: 6.0}\ntrain: {epochs: 7, lr: 0.01}\n')
    args = cli.build_parser().parse_args([
        'train', '--config', str(cfg), '--model', 'rotate', '--dim', '16', '--epochs', '3',
        '--model-arg', 'epsilon=1.5', '--filter-negatives', 'true'])
    out = cli.resolve_config(args)
    assert out['dataset'] == 'MKG-Y' and out['model'] == 'rotate'
    assert out['model_args'] == {'hidden_channels': 16, 'margin': 6.0, 'epsilon': 1.5}
    assert out['train'] == {'epochs': 3, 'lr': 0.01, 'filter_negatives': True}


def test_bad_config_keys(tmp_path):
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'dataset': 'MKG-W', 'modle': 'rotate'}))
    args = cli.build_parser().parse_args(['train', '--config', str(cfg)])
    with pytest.raises(ValueError, match="unknown keys \\['modle'\\]"):
        cli.resolve_config(args)
    with pytest.raises(ValueError, match="unknown model"):
        cli.run({'dataset': 'MKG-W', 'model': 'nope', 'model_args': {}, 'dataset_args': {},
                 'train': {}})


def test_run_end_to_end(tmp_path, monkeypatch):
    # A registered name resolving to a small synthetic graph keeps this fast and offline.
    monkeypatch.setitem(cli_datasets(), 'fake', lambda root: FakeMMKGDataset(
        num_entities=40, num_relations=2, num_triples=300, seed=0))
    out = tmp_path / 'run'
    code = cli.main(['train', '--dataset', 'fake', '--model', 'distmult', '--dim', '8',
                     '--epochs', '2', '--eval-every', '1', '--num-negatives', '2',
                     '--progress', 'false', '--out', str(out), '--root', str(tmp_path)])
    assert code == 0
    res = json.load(open(out / 'results.json'))
    assert res['epochs_trained'] == 2 and 'test' in res
    assert (out / 'config.yaml').exists() or (out / 'config.json').exists()


def cli_datasets():
    from torch_mmkg.datasets import DATASETS
    return DATASETS


CONFIGS = sorted(f for f in os.listdir(osp.join(osp.dirname(__file__), '..', 'examples',
                                                'configs')) if f.endswith('.yaml'))


@pytest.mark.parametrize('name', CONFIGS)
def test_shipped_configs_are_valid(name):
    pytest.importorskip('yaml')
    from torch_mmkg.datasets import DATASETS
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import TrainConfig
    path = osp.join(osp.dirname(__file__), '..', 'examples', 'configs', name)
    cfg = cli.resolve_config(cli.build_parser().parse_args(['train', '--config', path]))
    assert cfg['dataset'] in DATASETS
    train = TrainConfig.from_dict(cfg['train'])  # every training key is known
    args = dict(cfg['model_args'])
    dim = args.pop('hidden_channels')
    cls = MODELS[cfg['model']]
    if cfg['model'] == 'mkgformer':  # checkpoints the user supplies: the error names them
        assert args['text_model'] is None and args['vision_model'] is None
        data = FakeMMKGDataset(num_entities=12, num_relations=2, num_triples=20,
                               modalities={m: 3 for m in args['modalities']}, seed=0)[0]
        with pytest.raises(ValueError, match='text_model and vision_model are missing'):
            cls.from_data(data, dim, **args)
        return
    if hasattr(cls, 'from_data'):  # a small graph with the config's modalities stands in
        names = args.get('modalities') or ['image', 'text']
        data = FakeMMKGDataset(num_entities=12, num_relations=2, num_triples=20,
                               modalities={m: 3 + i for i, m in enumerate(names)}, seed=0)[0]
        model = cls.from_data(data, dim, **args)
    else:
        model = cls(10, 2, dim, **args)
    assert model.hidden_channels == dim
    if train.comat is not None:
        from torch_mmkg.training import CoMAT
        CoMAT(model, **train.comat)  # every CoMAT key is known


@withMirror
def test_kvc16k_configs_say_what_to_supply(tmp_path, capsys):
    import warnings

    import torch

    from torch_mmkg.datasets import KVC16K
    from torch_mmkg.nn import MoMoK
    configs = osp.join(osp.dirname(__file__), '..', 'examples', 'configs')
    root = tmp_path / 'KVC16K'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the split report
        for name, suffixes in (('native_kvc16k.yaml', ['visual', 'textual', 'audio', 'video']),
                               ('momok_kvc16k.yaml', ['visual', 'textual'])):
            code = cli.main(['train', '--config', osp.join(configs, name), '--root',
                             str(tmp_path), '--progress', 'false'])
            err = capsys.readouterr().err
            assert code == 2, err
            assert 'needs the modalities' in err and 'it has none' in err
            for suffix in suffixes:
                assert f'Kuai16K-{suffix}.pth' in err
            assert str(root) in err and 'text_encoder' in err
        # a config that names no modality: the model's own refusal, and what to supply
        cfg = tmp_path / 'native.yaml'
        cfg.write_text('dataset: KVC16K\nmodel: native\nmodel_args: {hidden_channels: 8}\n')
        assert cli.main(['train', '--config', str(cfg), '--root', str(tmp_path),
                         '--progress', 'false']) == 2
        err = capsys.readouterr().err
        assert 'NATIVE needs at least one modality' in err and 'Kuai16K-video.pth' in err
        # with the authors' files where the message says, the modalities are there
        gen = torch.Generator().manual_seed(0)
        for suffix in ('visual', 'textual'):
            torch.save(torch.randn(16015, 4, generator=gen), root / f'Kuai16K-{suffix}.pth')
        dataset = KVC16K(str(root), log=False)
    data = dataset[0]
    assert data.modalities == ['image', 'text']
    cli._check_modalities({'model': 'momok', 'dataset': 'KVC16K'}, dataset, data,
                          ['image', 'text'])
    model = MoMoK.from_data(data, 8, modalities=['image', 'text'])
    assert model.modalities == ['image', 'text']
    with pytest.raises(ValueError, match=r"needs the modalities \['audio'\].*"
                                         r"Kuai16K-audio\.pth"):
        cli._check_modalities({'model': 'native', 'dataset': 'KVC16K'}, dataset, data,
                              ['image', 'audio'])


# Bad input on the command line ##############################################################

def _fake(monkeypatch):
    monkeypatch.setitem(cli_datasets(), 'fake', lambda root, **kwargs: FakeMMKGDataset(
        num_entities=40, num_relations=2, num_triples=300, seed=0, **kwargs))


def _train(tmp_path, *extra):
    return ['train', '--dataset', 'fake', '--model', 'distmult', '--dim', '8', '--epochs', '2',
            '--eval-every', '1', '--num-negatives', '2', '--progress', 'false',
            '--root', str(tmp_path), *extra]


def test_yaml_exponents_are_numbers(tmp_path):
    pytest.importorskip('yaml')
    path = tmp_path / 'c.yaml'
    path.write_text('train: {lr: 1e-3, weight_decay: 5E-6, max_minutes: 1.5e1, epochs: 3, '
                    'seed: 1_0}\nmodel_args: {margin: .5, name: 1e-3x}\n')
    out = cli.load_config_file(str(path))
    assert out['train'] == {'lr': 0.001, 'weight_decay': 5e-06, 'max_minutes': 15.0,
                            'epochs': 3, 'seed': 10}
    assert out['model_args'] == {'margin': 0.5, 'name': '1e-3x'}


@pytest.mark.parametrize('text,message', [
    ('train:\n  lr: 0.1\n  epochs: [1,\n', r':4:1: invalid YAML: expected'),
    ('train: {lr: 0.1}\ntrain: {lr: 0.2}\n', r":2:1: invalid YAML: duplicate key 'train' "
                                             r"\(first on line 1\)"),
    ('train: !!python/object/apply:os.system ["touch pwned"]\n',
     r':1:8: invalid YAML: could not determine a constructor for the tag '
     r"'tag:yaml.org,2002:python/object/apply:os.system'"),
    ('- a\n- b\n', r': the config must be a mapping, got list'),
    ('train: [1, 2]\n', r": 'train' must be a mapping, got list \[1, 2\]"),
    ('model: [rotate]\n', r": 'model' must be a name, got list"),
])
def test_bad_yaml_names_the_file(tmp_path, monkeypatch, text, message):
    pytest.importorskip('yaml')
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'c.yaml'
    path.write_text(text)
    args = cli.build_parser().parse_args(['train', '--config', str(path)])
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        cli.resolve_config(args)
    assert not (tmp_path / 'pwned').exists()


def test_bad_json_names_the_file(tmp_path):
    path = tmp_path / 'c.json'
    path.write_text('{"train": {"lr": 0.1,}}')
    with pytest.raises(ValueError, match=re.escape(str(path)) + r':1:22: invalid JSON'):
        cli.load_config_file(str(path))


def test_errors_print_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    _fake(monkeypatch)
    cases = [
        (_train(tmp_path, '--lr', '-1'), 'error: TrainConfig: lr must be > 0'),
        (_train(tmp_path, '--metric', 'auc'), "error: TrainConfig: metric must be one of"),
        (_train(tmp_path, '--model-arg', 'margin'),
         "error: --model-arg expects KEY=VALUE, got 'margin'"),
        (_train(tmp_path, '--model-arg', 'nope=1'), "error: bad model_args for distmult: "),
        (_train(tmp_path, '--config', str(tmp_path / 'missing.yaml')),
         f"error: {tmp_path / 'missing.yaml'}: no such config file"),
        (_train(tmp_path, '--resume'),
         'error: --resume needs the directory of the run to continue'),
        (_train(tmp_path, '--checkpoint-every', '1'),
         'error: checkpoint_every=1 needs an output directory'),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message), (argv, err)
        assert err.count('\n') == 1 and 'Traceback' not in err
    with pytest.raises(ValueError, match='lr must be > 0'):  # --traceback shows it all
        cli.main(['--traceback', *_train(tmp_path, '--lr', '-1')])
    with pytest.raises(SystemExit) as e:  # argparse's own errors: status 2 too
        cli.main(_train(tmp_path, '--filter-negatives', 'maybe'))
    assert e.value.code == 2
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_resume_checks_the_run(tmp_path, monkeypatch, capsys):
    _fake(monkeypatch)
    out = str(tmp_path / 'run')
    base = _train(tmp_path, '--out', out, '--checkpoint-every', '1')
    assert cli.main(base) == 0
    capsys.readouterr()
    # A second run into the same directory would overwrite the first one's checkpoint.
    assert cli.main(base) == 2
    assert 'holds the checkpoint of an earlier run; pass --resume' in capsys.readouterr().err
    # Resuming with another model argument or learning rate is refused, naming what changed.
    assert cli.main(base + ['--resume', '--model-arg', 'regularization_weight=0.1']) == 2
    err = capsys.readouterr().err
    assert 'cannot resume' in err and "regularization_weight" in err
    assert cli.main(base + ['--resume', '--lr', '0.5']) == 2
    assert "lr: 0.001 in the checkpoint, 0.5 now" in capsys.readouterr().err
    # Running longer is what resuming is for.
    assert cli.main(base + ['--resume', '--epochs', '3']) == 0, capsys.readouterr().err
    res = json.load(open(osp.join(out, 'results.json')))
    assert res['epochs_trained'] == 3 and res['resumes'][0]['changed'] == {'epochs': [2, 3]}


# Names in any case ##########################################################################

@pytest.mark.parametrize('name', ['RotatE', 'rotate', 'ROTATE', 'Rot-At_E'])
def test_model_names_are_case_insensitive(name):
    args = cli.build_parser().parse_args(['train', '--dataset', 'MKG-W', '--model', name])
    assert cli.resolve_config(args)['model'] == 'rotate'


def test_model_name_from_a_config_file_is_canonical(tmp_path):
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'dataset': 'MKG-W', 'model': 'TuckER'}))
    args = cli.build_parser().parse_args(['train', '--config', str(cfg)])
    assert cli.resolve_config(args)['model'] == 'tucker'


def test_unknown_model_suggests_the_closest(tmp_path, monkeypatch, capsys):
    _fake(monkeypatch)
    argv = _train(tmp_path)
    argv[argv.index('distmult')] = 'rotat'
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'rotat'; choose from ['")
    assert "'complex', 'distmult', " in err  # sorted
    assert err.endswith("; did you mean 'rotate'?\n") and err.count('\n') == 1
    with pytest.raises(ValueError, match="did you mean 'tucker'"):
        cli.run({'dataset': 'fake', 'model': 'tuckr', 'model_args': {}, 'dataset_args': {},
                 'train': {}})


def test_saved_config_holds_canonical_names(tmp_path, monkeypatch, capsys):
    _fake(monkeypatch)
    out = tmp_path / 'run'
    argv = _train(tmp_path, '--regime', 'NS', '--optimizer', 'AdamW', '--sampling',
                  'Bernoulli', '--out', str(out), '--checkpoint-every', '1')
    argv[argv.index('distmult')] = 'DistMult'
    assert cli.main(argv) == 0, capsys.readouterr().err
    saved = cli.load_config_file(cli._saved_config_path(str(out)))
    assert saved['model'] == 'distmult'
    assert {k: saved['train'][k] for k in ('regime', 'optimizer', 'sampling')} == {
        'regime': 'negative_sampling', 'optimizer': 'adamw', 'sampling': 'bernoulli'}
    # Resuming with other spellings of the same names is resuming the same run.
    argv = _train(tmp_path, '--regime', 'negative-sampling', '--optimizer', 'ADAMW',
                  '--sampling', 'bernoulli', '--out', str(out), '--checkpoint-every', '1',
                  '--resume', '--epochs', '3')
    argv[argv.index('distmult')] = 'DISTMULT'
    assert cli.main(argv) == 0, capsys.readouterr().err
    res = json.load(open(out / 'results.json'))
    assert res['epochs_trained'] == 3 and res['resumes'][0]['changed'] == {'epochs': [2, 3]}


def test_build_model():
    import copy

    from torch_mmkg.nn import MoMoK, RotatE
    data = FakeMMKGDataset(num_entities=25, num_relations=3, num_clusters=5, num_triples=60,
                           modalities={'image': 4, 'text': 3}, seed=0)[0]
    cfg = {'dataset': 'fake', 'model': 'RotatE',
           'model_args': {'hidden_channels': 12, 'margin': 6.0}}
    before = copy.deepcopy(cfg)
    model = cli.build_model(cfg, data)
    assert type(model) is RotatE
    assert (model.num_nodes, model.num_relations, model.hidden_channels) == (25, 3, 12)
    assert cfg == before  # the config is not changed
    # a multi-modal model takes the graph's features, the modalities the config names
    cfg = {'dataset': 'fake', 'model': 'momok',
           'model_args': {'hidden_channels': 8, 'modalities': ['text']}}
    model = cli.build_model(cfg, data)
    assert type(model) is MoMoK and model.modalities == ['text']
    assert (model.num_nodes, model.num_relations, model.hidden_channels) == (25, 3, 8)
    cfg['model_args']['modalities'] = ['image', 'audio']
    with pytest.raises(ValueError, match=r"needs the modalities \['audio'\]"):
        cli.build_model(cfg, data)
    for name in ('rotate', 'momok'):
        with pytest.raises(ValueError, match=f"bad model_args for {name}: .*no_such_argument"):
            cli.build_model({'dataset': 'fake', 'model': name, 'model_args': {
                'hidden_channels': 8, 'no_such_argument': 1}}, data)
    with pytest.raises(ValueError, match="unknown model 'rotat'"):
        cli.build_model({'dataset': 'fake', 'model': 'rotat', 'model_args': {}}, data)
