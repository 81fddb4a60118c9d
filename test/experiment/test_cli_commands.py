r"""The command line of the experiment layer: typed values, help on every flag, listings with
arguments, devices, trackers (issue 17's list of what a researcher hit)."""
import argparse
import json
import os.path as osp

import pytest
import torch

from torch_mmkg import cli
from torch_mmkg.training import TrainConfig, build_tracker
from torch_mmkg.training.trainer import resolve_device

from test_run import _cfg, _history, make_folder  # noqa: E402 (test/experiment on the path)


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_and_flag_has_help():
    parser = cli.build_parser()
    commands = _subparsers(parser)
    assert {'train', 'evaluate', 'predict', 'tune', 'list'} <= set(commands)
    for name, sub in [('', parser)] + sorted(commands.items()):
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != 'undocumented', (name, action.dest)
    # the help of a training flag is the documentation of its field
    helps = {a.dest: a.help for a in commands['train']._actions}
    assert helps['num_negatives'].startswith('Negatives per positive K.')
    assert 'minimised' in helps['metric']
    for field in TrainConfig.__dataclass_fields__:
        assert field in helps, field


def test_version(capsys):
    import torch_mmkg
    with pytest.raises(SystemExit) as e:
        cli.main(['--version'])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f'torch_mmkg {torch_mmkg.__version__}'


def test_values_are_typed():
    args = cli.build_parser().parse_args([
        'train', '--dataset', 'MKG-W', '--model', 'NATIVE', '--model-arg', 'modalities=[text]',
        '--model-arg', 'margin=9', '--model-arg', 'name=abc', '--model-arg', 'scale=1e-3',
        '--regime-args', '{num_candidates: 20}', '--test', 'false'])
    cfg = cli.resolve_config(args)
    assert cfg['model'] == 'native'
    assert cfg['model_args'] == {'modalities': ['text'], 'margin': 9, 'name': 'abc',
                                 'scale': 1e-3}
    assert cfg['train'] == {'regime_args': {'num_candidates': 20}, 'test': False}
    for bad in (['--test', 'ture'], ['--progress', 'flase'], ['--epochs', 'ten']):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(['train', *bad])


@pytest.mark.skipif(torch.cuda.is_available(), reason='a machine without CUDA')
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="device 'cuda': CUDA is not available here"):
        resolve_device('cuda')
    folder = make_folder(tmp_path / 'kg')
    assert cli.main(['train', '--dataset', folder, '--model', 'transe', '--dim', '4',
                     '--device', 'cuda', '--epochs', '1']) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda': CUDA is not available") and err.count('\n') == 1
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu'"):
        resolve_device('gpu')


def test_list_shows_arguments_and_defaults(capsys):
    assert cli.main(['list']) == 0
    out = capsys.readouterr().out
    for kind in ('models:', 'datasets:', 'fusions:', 'regimes:', 'transforms:', 'trackers:',
                 'configs:'):
        assert kind in out
    assert cli.main(['list', 'models', 'RotatE']) == 0
    out = capsys.readouterr().out
    assert out.startswith('rotate: torch_mmkg.nn.kge.rotate.RotatE')
    assert '  margin (default 9.0)' in out and '  hidden_channels (required)' in out
    assert cli.main(['list', 'models', 'momok']) == 0  # a multi-modal model: from_data's too
    assert '  modalities (default None)' in capsys.readouterr().out
    assert cli.main(['list', 'regimes']) == 0
    assert 'kbgan' in capsys.readouterr().out
    assert cli.main(['list', 'models', 'rotat']) == 2
    assert "did you mean 'rotate'" in capsys.readouterr().err


def test_docstring_args_parses_google_style():
    def f(a, b=2):
        r"""Does.

        Args:
            a (int): The first, see :obj:`b` and :class:`~torch.Tensor`.
            b (int, optional): The second,
                on two lines. (default: :obj:`2`)

        Returns:
            int: nothing of interest.
        """
    assert cli.docstring_args(f) == {'a': 'The first, see b and torch.Tensor.',
                                     'b': 'The second, on two lines. (default: 2)'}


def test_shipped_config_by_name():
    args = cli.build_parser().parse_args(['train', '--config', 'NATIVE_db15k'])
    cfg = cli.resolve_config(args)
    assert cfg['model'] == 'native' and cfg['dataset'] == 'DB15K'


def test_resume_refuses_changes_beyond_the_resumable_ones(tmp_path, capsys):
    folder = make_folder(tmp_path / 'kg')
    out = str(tmp_path / 'run')
    assert cli.main(['train', '--dataset', folder, '--model', 'distmult', '--dim', '4',
                     '--epochs', '1', '--eval-every', '1', '--progress', 'false',
                     '--out', out]) == 0
    capsys.readouterr()
    assert cli.main(['train', '--resume', out, '--lr', '0.5']) == 2
    assert 'cannot resume' in capsys.readouterr().err
    assert cli.main(['train', '--resume', out, '--model-arg', 'margin=2']) == 2
    assert 'model_args' in capsys.readouterr().err
    assert cli.main(['train', '--resume', out, '--epochs', '2', '--quiet']) == 0
    assert [h['epoch'] for h in _history(osp.join(out, 'history.jsonl'))] == [1, 2]
    # the form of torch_mmkg 0.1: the saved config and --resume, without --out
    assert cli.main(['train', '--config', osp.join(out, 'config.yaml'), '--resume',
                     '--epochs', '3']) == 0
    assert [h['epoch'] for h in _history(osp.join(out, 'history.jsonl'))] == [1, 2, 3]


def test_trackers(tmp_path):
    with pytest.raises(ValueError, match=r"unknown tracker 'csvv'; choose from \['csv'"):
        build_tracker('csvv', str(tmp_path))
    for name, package in (('wandb', 'wandb'), ('mlflow', 'mlflow')):
        try:
            __import__(package)
        except ImportError:
            with pytest.raises(ImportError, match=f'pip install {package}'):
                build_tracker(name, str(tmp_path))


def test_tensorboard_tracker_logs_the_history(tmp_path):
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from torch_mmkg.experiment import train
    folder = make_folder(tmp_path / 'kg')
    out = str(tmp_path / 'run')
    cfg = dict(_cfg(folder, epochs=3), trackers=['TensorBoard'])
    results = train(cfg, out=out)
    acc = EventAccumulator(osp.join(out, 'tensorboard'))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars('train/loss')]
    assert loss == [(h['epoch'], pytest.approx(h['loss'], rel=1e-6))
                    for h in results['history']]  # float32 in the event file
    mrr = [e.value for e in acc.Scalars('val/mrr')]
    assert mrr == [pytest.approx(h['val']['mrr'], rel=1e-6) for h in results['history']]
    test = acc.Scalars('test/mrr')
    assert test[0].value == pytest.approx(results['test']['realistic']['both']['mrr'],
                                          rel=1e-6)
    saved = json.load(open(osp.join(out, 'results.json')))
    assert saved['epochs_trained'] == 3
