r"""A catalogue of bad inputs a user can hand the library — readers, feature files, configs, the
command line, checkpoints and run folders, models, downloads — each asserted to be refused with
an error that says what is wrong and where (the file and line, the option, the argument).

``python test/test_bad_inputs.py`` prints the catalogue as a table of the messages a user sees.
"""
import os
import os.path as osp
import pickle
import re
import sys
import tempfile
import warnings
from typing import Callable, List, NamedTuple, Tuple, Type, Union

import numpy as np
import pytest
import torch

from torch_mmkg import cli
from torch_mmkg.data import (ENTITY, build_mmkg, read_labelled_triples, read_openke_dict,
                             read_openke_triples)
from torch_mmkg.datasets import FakeMMKGDataset, RawFile, fetch
from torch_mmkg.datasets.folder import MMKGFolder
from torch_mmkg.nn import RotatE
from torch_mmkg.testing import PlantedPayload
from torch_mmkg.training import TrainConfig, Trainer, TrainingDivergedError, seed_everything

Errors = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


class Case(NamedTuple):
    group: str
    name: str
    run: Callable[[str], object]  # given a fresh temporary folder
    error: Errors
    message: str  # a regex; '{tmp}' is replaced by the escaped temporary folder


CASES: List[Case] = []


def case(group: str, name: str, error: Errors, message: str):
    def wrap(fn):
        CASES.append(Case(group, name, fn, error, message))
        return fn
    return wrap


def _write(folder, name, text, mode='w'):
    path = osp.join(folder, name)
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)
    return path


TRAIN = 'a\tr\tb\nb\tr\tc\nc\ts\ta\n'


def _folder(tmp, features=None, **kwargs):
    raw = osp.join(tmp, 'raw')
    _write(raw, 'train.txt', TRAIN)
    _write(raw, 'valid.txt', 'a\ts\tc\n')
    _write(raw, 'test.txt', 'b\ts\ta\n')
    for name, value in (features or {}).items():
        path = osp.join(raw, 'features', name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        if name.endswith('.npy'):
            np.save(path, value)
        else:
            torch.save(value, path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return MMKGFolder(tmp, **kwargs)


# Readers ####################################################################################

@case('readers', 'OpenKE count header disagrees with the rows', ValueError,
      r'{tmp}/train2id.txt: the header says 3 rows but the file has 2')
def _(tmp):
    read_openke_triples(_write(tmp, 'train2id.txt', '3\n0 1 0\n1 0 0\n'), 2, 1)


@case('readers', 'fractional id in a triple file', ValueError,
      r"{tmp}/train2id.txt:3: non-integer field in '1 0.5 0'")
def _(tmp):
    read_openke_triples(_write(tmp, 'train2id.txt', '2\n0 1 0\n1 0.5 0\n'), 2, 1)


@case('readers', 'entity id out of range', ValueError,
      r'{tmp}/train2id.txt:2: tail entity id 7 is out of range \[0, 2\)')
def _(tmp):
    read_openke_triples(_write(tmp, 'train2id.txt', '1\n0 7 0\n'), 2, 1)


@case('readers', 'duplicate entity name', ValueError,
      r"{tmp}/entity2id.txt:3: duplicate name 'a' \(already id 0\)")
def _(tmp):
    read_openke_dict(_write(tmp, 'entity2id.txt', '2\na 0\na 1\n'))


@case('readers', 'ids that do not cover 0..n-1', ValueError,
      r'{tmp}/entity2id.txt: ids must be exactly 0..1, found id 5 out of range')
def _(tmp):
    read_openke_dict(_write(tmp, 'entity2id.txt', '2\na 0\nb 5\n'))


@case('readers', 'empty dictionary file', ValueError,
      r'{tmp}/entity2id.txt: the file is empty \(expected a count on line 1\)')
def _(tmp):
    read_openke_dict(_write(tmp, 'entity2id.txt', ''))


@case('readers', 'labelled triple with two fields', ValueError,
      r"{tmp}/train.txt:2: expected 3 fields separated by '\\t'")
def _(tmp):
    read_labelled_triples(_write(tmp, 'train.txt', 'a\tr\tb\na\tr\n'), {'a': 0, 'b': 1},
                          {'r': 0})


@case('readers', 'unknown entity name', ValueError, r"{tmp}/train.txt:1: unknown entity 'z'")
def _(tmp):
    read_labelled_triples(_write(tmp, 'train.txt', 'a\tr\tz\n'), {'a': 0}, {'r': 0})


@case('readers', 'bytes that are not UTF-8', ValueError,
      r'{tmp}/train2id.txt:2: not UTF-8 text \(byte 0xff at offset 6\)')
def _(tmp):
    read_openke_triples(_write(tmp, 'train2id.txt', b'1\n0 1 \xff\n', 'wb'), 2, 1)


@case('readers', 'folder without a knowledge graph', ValueError,
      r'{tmp}/raw: no knowledge graph found; looked for OpenKE')
def _(tmp):
    os.makedirs(osp.join(tmp, 'raw'))
    MMKGFolder(tmp)


# Feature files ##############################################################################

@case('features', 'stride-0 tensor (1.5 KB that expands to gigabytes)', ValueError,
      r'{tmp}/raw/features/image.pt: holds a \[100000, 10000\] tensor stored in only 4 bytes '
      r'\(an expanded or overlapping view, strides \[0, 0\]\)')
def _(tmp):
    _folder(tmp, {'image.pt': torch.zeros(1, 1).expand(100000, 10000)})


@case('features', '[N, 0] features', ValueError,
      r'{tmp}/raw/features/image.pt: features have shape \(3, 0\), i.e. no feature columns')
def _(tmp):
    _folder(tmp, {'image.pt': torch.zeros(3, 0)})


@case('features', 'complex features', ValueError,
      r'{tmp}/raw/features/image.pt: complex features \(torch.complex64\) are not supported')
def _(tmp):
    _folder(tmp, {'image.pt': torch.ones(3, 2, dtype=torch.complex64)})


@case('features', 'a .pkl file among the features', ValueError,
      r'{tmp}/raw/features/audio.pkl: .pkl files are refused because loading a pickle can run '
      r'code. features/ holds <modality>.pt\|.pth\|.npy')
def _(tmp):
    _write(osp.join(tmp, 'raw', 'features'), 'audio.pkl', pickle.dumps([1.0]), 'wb')
    _folder(tmp)


@case('features', 'a feature file with too few rows (not blamed on its mask)', ValueError,
      r'{tmp}/raw/features/image.pt: 2 feature rows but the graph has 3 entities')
def _(tmp):
    _folder(tmp, {'image.pt': torch.ones(2, 4), 'image_mask.pt': torch.ones(3).bool()})


@case('features', 'NaN in a feature row', ValueError,
      r'{tmp}/raw/features/image.npy: row 1, feature 0 holds nan; features must be finite')
def _(tmp):
    _folder(tmp, {'image.npy': np.array([[1.0], [np.nan], [2.0]])})


@case('features', 'a mask of 0/1/2', ValueError,
      r"{tmp}/raw/features/image_mask.pt: the mask of modality 'image' must be boolean")
def _(tmp):
    _folder(tmp, {'image.pt': torch.ones(3, 2), 'image_mask.pt': torch.tensor([0, 1, 2])})


@case('features', 'a pickled object array as .npy', ValueError,
      r'{tmp}/raw/features/image.npy: not a plain numpy array')
def _(tmp):
    os.makedirs(osp.join(tmp, 'raw', 'features'))
    np.save(osp.join(tmp, 'raw', 'features', 'image.npy'),
            np.array([PlantedPayload(osp.join(tmp, 'pwned'))], dtype=object),
            allow_pickle=True)
    try:
        _folder(tmp)
    finally:
        assert not osp.exists(osp.join(tmp, 'pwned'))


@case('features', 'a .pt file holding a dict', ValueError,
      r'{tmp}/raw/features/image.pt: expected a tensor, found dict')
def _(tmp):
    _folder(tmp, {'image.pt': {'x': torch.ones(3, 2)}})


@case('features', 'a .pt file with a planted payload', ValueError,
      r"{tmp}/raw/features/image.pt: cannot read the tensor file: it refers to the Python "
      r"object '(posix|nt).system'")
def _(tmp):
    try:
        _folder(tmp, {'image.pt': PlantedPayload(osp.join(tmp, 'pwned'))})
    finally:
        assert not osp.exists(osp.join(tmp, 'pwned'))


@case('features', 'an index file naming an unknown entity', ValueError,
      r"{tmp}/raw/features/image_index.txt:2: entity 'zz' is not in the graph")
def _(tmp):
    _write(osp.join(tmp, 'raw', 'features'), 'image_index.txt', 'a\nzz\n')
    _folder(tmp, {'image.pt': torch.ones(2, 2)})


@case('features', 'a modality name that is not an identifier', ValueError,
      r"{tmp}/raw/features/Image.pt: modality name 'Image' must be a lower-case identifier")
def _(tmp):
    _folder(tmp, {'Image.pt': torch.ones(3, 2)})


@case('features', 'build_mmkg(num_entities=10.7)', ValueError,
      r'num_entities must be a positive integer, got 10.7')
def _(tmp):
    build_mmkg(10.7, 1, {'train': torch.tensor([[0, 0, 1]])})


@case('features', 'triple ids given as floats', ValueError,
      r"triples\['train'\]: triple ids must be integers, got torch.float64")
def _(tmp):
    build_mmkg(3, 1, {'train': np.array([[0, 0, 1.7]])})


# Configs ####################################################################################

def _config(tmp, text, name='c.yaml'):
    path = _write(tmp, name, text)
    return cli.resolve_config(cli.build_parser().parse_args(['train', '--config', path]))


@case('configs', "a learning rate given as the string '1e-3'", ValueError,
      r"TrainConfig: lr must be a number, got the string '1e-3'")
def _(tmp):
    TrainConfig(lr='1e-3')


@case('configs', 'fractional epochs', ValueError, r'TrainConfig: epochs must be an integer, '
                                                  r'got 2.5')
def _(tmp):
    TrainConfig(epochs=2.5)


@case('configs', 'negative gradient clipping (gradient ascent)', ValueError,
      r'TrainConfig: grad_clip must be None or > 0')
def _(tmp):
    TrainConfig(grad_clip=-1.0)


@case('configs', 'patience 0', ValueError, r'TrainConfig: patience must be None or >= 1')
def _(tmp):
    TrainConfig(patience=0)


@case('configs', 'negative time budget', ValueError,
      r'TrainConfig: max_minutes must be None or > 0, got -5')
def _(tmp):
    TrainConfig(max_minutes=-5)


@case('configs', 'unknown selection metric', ValueError,
      r"TrainConfig: metric must be one of \['hits@1', 'hits@10', 'hits@3', 'mr', 'mrr'\]")
def _(tmp):
    TrainConfig(metric='auc')


@case('configs', 'unknown training option', ValueError,
      r"unknown training options \['lrr'\]")
def _(tmp):
    TrainConfig.from_dict({'lrr': 0.1})


@case('configs', 'YAML syntax error', ValueError, r'{tmp}/c.yaml:3:1: invalid YAML')
def _(tmp):
    _config(tmp, 'train:\n  epochs: [1,\n')


@case('configs', 'YAML duplicate key', ValueError,
      r"{tmp}/c.yaml:2:1: invalid YAML: duplicate key 'train' \(first on line 1\)")
def _(tmp):
    _config(tmp, 'train: {lr: 0.1}\ntrain: {lr: 0.2}\n')


@case('configs', 'YAML tag that would call os.system', ValueError,
      r'{tmp}/c.yaml:1:8: invalid YAML: could not determine a constructor')
def _(tmp):
    _config(tmp, 'train: !!python/object/apply:os.system ["touch pwned"]\n')


@case('configs', 'JSON syntax error', ValueError, r'{tmp}/c.json:1:22: invalid JSON')
def _(tmp):
    _config(tmp, '{"train": {"lr": 0.1,}}', 'c.json')


@case('configs', 'a section of the wrong type', ValueError,
      r"{tmp}/c.yaml: 'model_args' must be a mapping, got str")
def _(tmp):
    _config(tmp, 'model_args: margin=6\n')


@case('configs', 'unknown top-level key', ValueError,
      r"{tmp}/c.yaml: unknown keys \['modle'\]")
def _(tmp):
    _config(tmp, 'modle: rotate\n')


# Command line ###############################################################################

class CommandLineError(ValueError):
    r"""The one line the command line printed on standard error, exiting with status 2."""


def _main(tmp, *argv):
    r"""The command line's exit status must be 2 and the last line on stderr the message (the
    only line, but for argparse's usage line)."""
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as e:  # argparse's own errors
            code = e.code
    lines = err.getvalue().strip().splitlines()
    usage = [line for line in lines if not line.startswith('usage:') and
             not line.startswith(' ')]
    assert code == 2 and len(usage) == 1, (code, err.getvalue())
    raise CommandLineError(usage[0])


@case('command line', '--model-arg without a value', ValueError,
      r"error: --model-arg expects KEY=VALUE, got 'margin'")
def _(tmp):
    _main(tmp, 'train', '--dataset', 'MKG-W', '--model', 'rotate', '--model-arg', 'margin')


@case('command line', 'unknown model', ValueError, r"error: unknown model 'rotat'; choose from")
def _(tmp):
    _main(tmp, 'train', '--dataset', 'MKG-W', '--model', 'rotat')


@case('command line', 'unknown dataset', ValueError, r"error: unknown dataset 'MKG-Q': neither a "
      r"registered dataset \(DB15K, KVC16K, MKG-W, MKG-Y, TIVA, WN9-IMG\) nor an existing folder")
def _(tmp):
    _main(tmp, 'train', '--dataset', 'MKG-Q', '--model', 'rotate')


@case('command line', '--resume without --out', ValueError,
      r'error: --resume needs the directory of the run to continue')
def _(tmp):
    _main(tmp, 'train', '--dataset', 'MKG-W', '--model', 'rotate', '--resume')


@case('command line', 'a missing config file', ValueError,
      r'error: {tmp}/nope.yaml: no such config file')
def _(tmp):
    _main(tmp, 'train', '--config', osp.join(tmp, 'nope.yaml'))


@case('command line', "a boolean flag given 'maybe'", ValueError,
      r"error: argument --filter-negatives: expected true or false, got 'maybe'")
def _(tmp):
    _main(tmp, 'train', '--dataset', 'MKG-W', '--filter-negatives', 'maybe')


@case('command line', 'an output folder holding another run', ValueError,
      r'error: {tmp} holds the checkpoint of an earlier run; pass --resume to continue it')
def _(tmp):
    torch.save({}, osp.join(tmp, 'checkpoint.pt'))
    _main(tmp, 'train', '--dataset', 'MKG-W', '--model', 'rotate', '--out', tmp)


# Training and checkpoints ###################################################################

def _data():
    return FakeMMKGDataset(num_entities=30, num_relations=2, num_clusters=3, num_triples=200,
                           modalities={'image': 4}, seed=1)[0]


def _model(**kwargs):
    seed_everything(0)
    return RotatE(30, 2, 4, margin=kwargs.pop('margin', 2.0), **kwargs)


def _config_of(**kwargs):
    base = dict(epochs=3, batch_size=64, lr=0.01, num_negatives=2, eval_every=1,
                progress=False, checkpoint_every=1)
    base.update(kwargs)
    return TrainConfig(**base)


def _checkpoint(tmp):
    data = _data()
    Trainer(_model(), data, _config_of(), out_dir=tmp).fit(stop_after_epoch=1)
    return data, osp.join(tmp, 'checkpoint.pt')


def _resume(tmp, data, model=None, **kwargs):
    return Trainer(model or _model(), data, _config_of(**kwargs), out_dir=tmp).fit(resume=True)


@case('checkpoints', 'an empty checkpoint', ValueError,
      r'{tmp}/checkpoint.pt: the checkpoint is empty \(0 bytes\)')
def _(tmp):
    data, path = _checkpoint(tmp)
    open(path, 'wb').close()
    _resume(tmp, data)


@case('checkpoints', 'a truncated checkpoint', ValueError,
      r'{tmp}/checkpoint.pt: cannot read the checkpoint: it is truncated or corrupt')
def _(tmp):
    data, path = _checkpoint(tmp)
    blob = open(path, 'rb').read()
    open(path, 'wb').write(blob[:len(blob) // 3])
    _resume(tmp, data)


@case('checkpoints', 'a garbage checkpoint', ValueError,
      r'{tmp}/checkpoint.pt: cannot read the checkpoint: it is not a valid torch.save file')
def _(tmp):
    data, path = _checkpoint(tmp)
    open(path, 'wb').write(b'\x80\x02garbage' * 10)
    _resume(tmp, data)


@case('checkpoints', 'a checkpoint with a planted payload', ValueError,
      r"{tmp}/checkpoint.pt: cannot read the checkpoint: it refers to the Python object "
      r"'(posix|nt).system'")
def _(tmp):
    data, path = _checkpoint(tmp)
    torch.save({'model': PlantedPayload(osp.join(tmp, 'pwned'))}, path)
    try:
        _resume(tmp, data)
    finally:
        assert not osp.exists(osp.join(tmp, 'pwned'))


@case('checkpoints', 'a state dict where a checkpoint should be', ValueError,
      r'{tmp}/checkpoint.pt: not a torch_mmkg training checkpoint \(it lacks optimizer')
def _(tmp):
    data, path = _checkpoint(tmp)
    torch.save({'model': _model().state_dict()}, path)
    _resume(tmp, data)


@case('checkpoints', 'resuming with another learning rate', ValueError,
      r'{tmp}/checkpoint.pt: cannot resume with changed training options \(lr: 0.01 in the '
      r'checkpoint, 0.5 now\)')
def _(tmp):
    data, _ = _checkpoint(tmp)
    _resume(tmp, data, lr=0.5)


@case('checkpoints', 'resuming another model (margin 6 instead of 2)', ValueError,
      r'{tmp}/checkpoint.pt: the checkpoint was written by another model \(.*'
      r'interaction.margin: 2.0 in the checkpoint, 6.0 now')
def _(tmp):
    data, _ = _checkpoint(tmp)
    _resume(tmp, data, _model(margin=6.0))


@case('checkpoints', 'a processed cache with a planted payload', ValueError,
      r"{tmp}/processed/mmkg_labelled_.*\.pt: cannot read the processed dataset: it refers to "
      r"the Python object '(posix|nt).system'")
def _(tmp):
    _folder(tmp)
    [name] = [n for n in os.listdir(osp.join(tmp, 'processed'))
              if n.startswith('mmkg_') and n.endswith('.pt')]
    torch.save(PlantedPayload(osp.join(tmp, 'pwned')), osp.join(tmp, 'processed', name))
    try:
        MMKGFolder(tmp)
    finally:
        assert not osp.exists(osp.join(tmp, 'pwned'))


@case('checkpoints', 'a planted processed/pre_transform.pt', ValueError,
      r"{tmp}/processed/pre_transform.pt: cannot read the record of the pre_transform: it "
      r"refers to the Python object")
def _(tmp):
    _folder(tmp)
    torch.save(PlantedPayload(osp.join(tmp, 'pwned')),
               osp.join(tmp, 'processed', 'pre_transform.pt'))
    try:
        MMKGFolder(tmp)
    finally:
        assert not osp.exists(osp.join(tmp, 'pwned'))


def _graph(train, val, test):
    def rows(x):
        return torch.tensor(x, dtype=torch.long).view(-1, 3)
    return build_mmkg(4, 2, {'train': rows(train), 'val': rows(val), 'test': rows(test)})


@case('training', 'an empty training split', ValueError,
      r'the training split is empty \(0 triples\): there is nothing to train on')
def _(tmp):
    Trainer(RotatE(4, 2, 4), _graph([], [[0, 0, 1]], [[1, 1, 2]]),
            _config_of(checkpoint_every=0))


@case('training', 'a validation split that is all training triples', ValueError,
      r'the cleaned validation split is empty: all 1 validation triples repeat training triples')
def _(tmp):
    Trainer(RotatE(4, 2, 4), _graph([[0, 0, 1]], [[0, 0, 1]], [[1, 1, 2]]),
            _config_of(checkpoint_every=0))


@case('training', 'an empty test split', ValueError, r'the test split is empty \(0 triples\); '
                                                     r'pass test=False')
def _(tmp):
    Trainer(RotatE(4, 2, 4), _graph([[0, 0, 1]], [[1, 0, 2]], []),
            _config_of(checkpoint_every=0))


@case('training', 'checkpoint_every without an output folder', ValueError,
      r'checkpoint_every=1 needs an output directory')
def _(tmp):
    Trainer(_model(), _data(), _config_of())


@case('training', 'a loss that diverges to 1e18 while finite', TrainingDivergedError,
      r"training diverged: the mean loss of epoch 2 is .*, more than divergence_factor=1000 "
      r"times the first epoch's")
def _(tmp):
    class Exploding(RotatE):
        calls = 0

        def score_batch(self, *args, **kwargs):  # a term that grows 1000x per batch
            self.calls += 1
            out = super().score_batch(*args, **kwargs)
            grow = out.views[0][1].new_tensor(10.0**(3 * self.calls))
            return out._replace(terms={**out.terms, 'explode': grow})

    seed_everything(0)
    Trainer(Exploding(30, 2, 4, margin=2.0), _data(), _config_of(checkpoint_every=0)).fit()


@case('checkpoints', 'resuming a model built on other feature values', ValueError,
      r"{tmp}/checkpoint.pt: the checkpoint's model was trained on other features than this "
      r"one \(x_image differs: sha256 [0-9a-f]{16} saved, [0-9a-f]{16} now\)")
def _(tmp):
    from torch_mmkg.nn import NATIVE
    data = _data()
    seed_everything(0)
    Trainer(NATIVE.from_data(data, 4), data, _config_of(), out_dir=tmp).fit(stop_after_epoch=1)
    data[ENTITY].x_image = data[ENTITY].x_image + 1.0 * data[ENTITY].mask_image[:, None]
    _resume(tmp, data, NATIVE.from_data(data, 4))


# Models and ids #############################################################################

@case('models', 'RotatE(hidden_channels=0)', ValueError,
      r'RotatE: hidden_channels must be a positive integer, got 0')
def _(tmp):
    RotatE(10, 2, 0)


@case('models', 'a fractional embedding size', ValueError,
      r'TuckER: hidden_channels must be a positive integer, got 2.5')
def _(tmp):
    from torch_mmkg.nn import TuckER
    TuckER(10, 2, 2.5)


@case('models', 'a negative dropout rate', ValueError,
      r'TuckER: input_dropout must be a finite number in \[0, 1\), got -0.1')
def _(tmp):
    from torch_mmkg.nn import TuckER
    TuckER(10, 2, 4, input_dropout=-0.1)


@case('models', 'an entity id out of range in score_tails', ValueError,
      r'score_tails: head_index holds entity id 10 at position 1, outside \[0, 10\)')
def _(tmp):
    RotatE(10, 2, 4).score_tails(torch.tensor([0, 10]), torch.tensor([0, 1]))


@case('models', 'a relation id out of range in forward', ValueError,
      r'forward: rel_type holds relation id -1 at position 0, outside \[0, 2\)')
def _(tmp):
    RotatE(10, 2, 4)(torch.tensor([0]), torch.tensor([-1]), torch.tensor([1]))


@case('models', 'float ids passed to forward', ValueError,
      r'forward: tail_index must be an integer tensor of entity ids in \[0, 10\), got a '
      r'torch.float32 tensor')
def _(tmp):
    RotatE(10, 2, 4)(torch.tensor([0]), torch.tensor([1]), torch.tensor([1.7]))


@case('models', 'float ids in the filter index (would be truncated)', ValueError,
      r'KnownTriples: head must be an integer tensor of entity ids in \[0, 10\)')
def _(tmp):
    from torch_mmkg.data import KnownTriples
    KnownTriples(torch.tensor([0.9]), torch.tensor([0]), torch.tensor([1]), 10, 2)


@case('models', 'float ids handed to the evaluator', ValueError,
      r'RankingEvaluator.evaluate: tail_index must be an integer tensor')
def _(tmp):
    from torch_mmkg.evaluation import RankingEvaluator
    one = torch.tensor([1])
    RankingEvaluator().evaluate(RotatE(10, 2, 4), one, one, one.float())


# Downloads ##################################################################################

@case('downloads', 'a truncated file in the mirror', ValueError,
      r'Mirror file {tmp}/mirror/o/r/c0/f.txt does not match the pin of o/r/c0/f.txt: expected '
      r'sha256 2cf24d.* \(5 bytes\), found sha256 .* \(2 bytes\)')
def _(tmp):
    _write(osp.join(tmp, 'mirror', 'o', 'r', 'c0'), 'f.txt', 'he')
    raw = RawFile('o', 'r', 'c0', 'f.txt', sha256='2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7'
                  '425e73043362938b9824', size=5)
    old = os.environ.get('TORCH_MMKG_MIRROR')
    os.environ['TORCH_MMKG_MIRROR'] = osp.join(tmp, 'mirror')
    try:
        fetch(raw, osp.join(tmp, 'raw'), log=False)
    finally:
        os.environ.pop('TORCH_MMKG_MIRROR') if old is None else \
            os.environ.__setitem__('TORCH_MMKG_MIRROR', old)
        assert not os.listdir(osp.join(tmp, 'raw'))


@case('downloads', 'a RawFile declared without a pin', ValueError,
      r"o/r/c0/f.txt has no pinned checksum, so its content cannot be verified. The file found "
      r"has sha256 2cf24d")
def _(tmp):
    _write(osp.join(tmp, 'mirror', 'o', 'r', 'c0'), 'f.txt', 'hello')
    old = os.environ.get('TORCH_MMKG_MIRROR')
    os.environ['TORCH_MMKG_MIRROR'] = osp.join(tmp, 'mirror')
    try:
        fetch(RawFile('o', 'r', 'c0', 'f.txt'), osp.join(tmp, 'raw'), log=False)
    finally:
        os.environ.pop('TORCH_MMKG_MIRROR') if old is None else \
            os.environ.__setitem__('TORCH_MMKG_MIRROR', old)


# The test and the table #####################################################################

@pytest.mark.parametrize('c', CASES, ids=[f'{c.group}: {c.name}' for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(c, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written outside the temporary folder
    tmp = str(tmp_path / 'case')
    os.makedirs(tmp)
    with pytest.raises(c.error) as info:
        c.run(tmp)
    message = str(info.value)
    assert re.search(c.message.replace('{tmp}', re.escape(tmp)), message), message


def test_catalogue_size():
    assert len(CASES) >= 40
    assert {c.group for c in CASES} >= {'readers', 'features', 'configs', 'command line',
                                        'checkpoints', 'training', 'models', 'downloads'}


def main():  # pragma: no cover - prints the table of the closing note
    print('| # | area | bad input | what the user sees |')
    print('|---|---|---|---|')
    for i, c in enumerate(CASES, start=1):
        with tempfile.TemporaryDirectory() as tmp:
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                c.run(osp.join(tmp, 'case') if os.makedirs(osp.join(tmp, 'case')) is None
                      else tmp)
                seen = 'ACCEPTED (no error)'
            except CommandLineError as e:
                seen = f'exit status 2, stderr: {e}'.replace(tmp, '<tmp>')
            except BaseException as e:  # noqa: BLE001
                seen = f'{type(e).__name__}: {e}'.replace(tmp, '<tmp>')
            finally:
                os.chdir(cwd)
        seen = ' '.join(seen.split()).replace('|', '\\|')
        print(f'| {i} | {c.group} | {c.name} | {seen[:300]} |')


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
