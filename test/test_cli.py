import json
import os
import os.path as osp

import pytest

from torch_mmkg import cli
from torch_mmkg.datasets import FakeMMKGDataset


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


CONFIGS = sorted(os.listdir(osp.join(osp.dirname(__file__), '..', 'examples', 'configs')))


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
