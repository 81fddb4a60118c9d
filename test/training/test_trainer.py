import dataclasses
import json
import math
import os.path as osp
import re

import numpy as np
import pytest
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.data import ENTITY, build_mmkg
from torch_mmkg.data.serialization import UnsafeFileError
from torch_mmkg.nn import DistMult, RotatE, TransE, TuckER
from torch_mmkg.testing import PlantedPayload
from torch_mmkg.training import (NonFiniteLossError, TrainConfig, Trainer,
                                 TrainingDivergedError, seed_everything)


def _data():
    return FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4, num_triples=600,
                           modalities={'image': 8, 'text': 6}, seed=1)[0]


def _model(data, cls=RotatE, seed=0, **kwargs):
    seed_everything(seed)
    if cls is RotatE:
        kwargs.setdefault('margin', 2.0)
    return cls(data[ENTITY].num_nodes, data.num_relations, 8, **kwargs)


def _cfg(**kwargs):
    base = dict(epochs=4, batch_size=64, lr=0.01, num_negatives=4, eval_every=2,
                progress=False, seed=3)
    base.update(kwargs)
    return TrainConfig(**base)


def test_config_validation():
    with pytest.raises(ValueError, match='sampling'):
        TrainConfig(sampling='weird')
    with pytest.raises(ValueError, match="unknown training options \\['lrr'\\]"):
        TrainConfig.from_dict({'lrr': 1.0})


def test_fit_learns_and_writes_results(tmp_path):
    data = _data()
    model = _model(data)
    before = Trainer(model, data, _cfg()).evaluate('test').metrics()['mrr']
    res = Trainer(model, data, _cfg(epochs=20, eval_every=5), out_dir=str(tmp_path)).fit()
    after = res['test']['realistic']['both']['mrr']
    # the planted cluster→relation→cluster signal is learnable: MRR must rise clearly
    assert after > before + 0.15
    assert res['best_epoch'] in (5, 10, 15, 20)
    saved = json.load(open(tmp_path / 'results.json'))
    assert saved['test']['realistic']['both']['mrr'] == pytest.approx(after)
    assert set(saved['test']) >= {'realistic', 'optimistic', 'pessimistic', 'by_category',
                                  'by_completeness'}
    assert osp.exists(tmp_path / 'best_model.pt')
    # model selection is on validation: the best epoch is the argmax of validation MRR
    vals = {h['epoch']: h['val']['mrr'] for h in res['history'] if 'val' in h}
    assert res['best_epoch'] == max(vals, key=vals.get)


@pytest.mark.parametrize('cls', [RotatE, TuckER])
def test_resume_reproduces_uninterrupted_run(tmp_path, cls):
    data = _data()
    cfg = _cfg(epochs=6, checkpoint_every=2, sampling='bernoulli', filter_negatives=True)
    full = Trainer(_model(data, cls), data, cfg, out_dir=str(tmp_path / 'a')).fit()

    first = Trainer(_model(data, cls), data, cfg, out_dir=str(tmp_path / 'b'))
    assert first.fit(stop_after_epoch=3) == {'interrupted_at_epoch': 3}
    # a fresh process: different global RNG state, new model, resumes from epoch 2
    torch.manual_seed(12345)
    second = Trainer(_model(data, cls, seed=99), data, cfg, out_dir=str(tmp_path / 'b'))
    resumed = second.fit(resume=True)
    assert resumed['epochs_trained'] == 6
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]
    assert resumed['test']['realistic'] == full['test']['realistic']
    assert resumed['best_epoch'] == full['best_epoch']


def test_resume_differs_without_rng_state(tmp_path):
    # Guard for the test above: restarting from scratch with another seed does differ.
    data = _data()
    a = Trainer(_model(data), data, _cfg(epochs=2)).fit()
    b = Trainer(_model(data, seed=5), data, _cfg(epochs=2, seed=4)).fit()
    assert [h['loss'] for h in a['history']] != [h['loss'] for h in b['history']]


def test_nan_guard():
    data = _data()
    model = _model(data)
    with torch.no_grad():
        model.node_emb.weight[0, 0] = float('nan')
    trainer = Trainer(model, data, _cfg(num_negatives=2, batch_size=600))
    with pytest.raises(NonFiniteLossError, match='epoch 1, batch 1'):
        trainer.fit()


def test_early_stopping_and_budget():
    data = _data()
    res = Trainer(_model(data), data, _cfg(epochs=50, eval_every=1, lr=1e-9,
                                           patience=2)).fit()
    assert res['stop_reason'] == 'early_stopping'
    assert res['epochs_trained'] < 50
    res = Trainer(_model(data), data, _cfg(epochs=50, max_minutes=1e-6)).fit()
    assert res['stop_reason'] == 'time_budget' and res['epochs_trained'] == 1
    assert 'val' in res['history'][-1]  # the last epoch is validated before stopping


def test_one_to_n_regime_for_non_tucker():
    data = _data()
    model = _model(data, DistMult)
    res = Trainer(model, data, _cfg(regime='1-n', epochs=2)).fit()
    assert math.isfinite(res['history'][-1]['loss'])


def test_trainer_rejects_mismatched_model():
    data = _data()
    with pytest.raises(ValueError, match='entities'):
        Trainer(RotatE(7, data.num_relations, 4), data, _cfg())


# Bad input and hostile files ################################################################


def _interrupted_run(tmp_path, cls=RotatE, **kwargs):
    data = _data()
    cfg = _cfg(epochs=6, checkpoint_every=2, **kwargs)
    Trainer(_model(data, cls), data, cfg, out_dir=str(tmp_path)).fit(stop_after_epoch=3)
    return data, cfg


def test_checkpoint_holds_plain_data_only(tmp_path):
    _interrupted_run(tmp_path)
    path = str(tmp_path / 'checkpoint.pt')
    # No class reference at all (numpy's random state is stored as a tensor).
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []


def test_planted_checkpoint_does_not_run(tmp_path):
    data, cfg = _interrupted_run(tmp_path)
    path = tmp_path / 'checkpoint.pt'
    marker = tmp_path / 'pwned'
    ckpt = torch.load(path, weights_only=True)
    ckpt['state'] = PlantedPayload(marker)
    torch.save(ckpt, path)
    trainer = Trainer(_model(data), data, cfg, out_dir=str(tmp_path))
    with pytest.raises(UnsafeFileError, match=f"{path}: cannot read the checkpoint: it refers "
                       f"to the Python object '(posix|nt).system'"):
        trainer.fit(resume=True)
    assert not marker.exists()


@pytest.mark.parametrize('damage,message', [
    ('empty', 'the checkpoint is empty'),
    ('truncated', 'cannot read the checkpoint: it is truncated or corrupt'),
    ('garbage', 'cannot read the checkpoint: it is not a valid torch.save file'),
    ('foreign', 'not a torch_mmkg training checkpoint \\(it lacks optimizer, best_state'),
])
def test_damaged_checkpoint_names_the_file(tmp_path, damage, message):
    data, cfg = _interrupted_run(tmp_path)
    path = tmp_path / 'checkpoint.pt'
    blob = path.read_bytes()
    if damage == 'foreign':
        torch.save({'model': _model(data).state_dict()}, path)
    else:
        path.write_bytes({'empty': b'', 'truncated': blob[:len(blob) // 2],
                          'garbage': b'\x80\x02garbage' * 20}[damage])
    trainer = Trainer(_model(data), data, cfg, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ': ' + message):
        trainer.fit(resume=True)


def test_resume_refuses_changed_options_and_records_allowed_ones(tmp_path):
    data, cfg = _interrupted_run(tmp_path)
    changed = dataclasses.replace(cfg, lr=0.5, batch_size=32)
    with pytest.raises(ValueError, match=r"cannot resume with changed training options "
                       r"\(batch_size: 64 in the checkpoint, 32 now; lr: 0.01 in the "
                       r"checkpoint, 0.5 now\)"):
        Trainer(_model(data), data, changed, out_dir=str(tmp_path)).fit(resume=True)
    # Running longer, with another patience or without progress bars is fine, and recorded.
    longer = dataclasses.replace(cfg, epochs=8, patience=5)
    res = Trainer(_model(data), data, longer, out_dir=str(tmp_path)).fit(resume=True)
    assert res['epochs_trained'] == 8 and res['config']['epochs'] == 8
    assert res['resumes'] == [{'epoch': 2, 'changed': {'epochs': [6, 8],
                                                       'patience': [None, 5]}}]


def test_resume_refuses_another_model(tmp_path):
    data, cfg = _interrupted_run(tmp_path)
    other = _model(data, margin=6.0)  # same parameter shapes, another margin
    with pytest.raises(ValueError, match=r"checkpoint was written by another model \(.*"
                       r"interaction.margin: 2.0 in the checkpoint, 6.0 now[^)]*\)"):
        Trainer(other, data, cfg, out_dir=str(tmp_path)).fit(resume=True)
    with pytest.raises(ValueError, match=r"another model \(class: .*RotatE"):
        Trainer(_model(data, TransE), data, cfg, out_dir=str(tmp_path)).fit(resume=True)


def test_resume_reads_checkpoints_of_version_0_1(tmp_path):
    # torch_mmkg 0.1 stored numpy's random state as a numpy array: still read, without running
    # anything, and the resumed run is identical.
    data = _data()
    cfg = _cfg(epochs=4, checkpoint_every=2)
    full = Trainer(_model(data), data, cfg, out_dir=str(tmp_path / 'a')).fit()
    Trainer(_model(data), data, cfg, out_dir=str(tmp_path / 'b')).fit(stop_after_epoch=3)
    path = tmp_path / 'b' / 'checkpoint.pt'
    ckpt = torch.load(path, weights_only=True)
    s = ckpt['rng']['numpy']
    ckpt['rng']['numpy'] = (s['name'], s['keys'].numpy().astype(np.uint32), s['pos'],
                            s['has_gauss'], s['cached_gaussian'])
    for key in ('format', 'model_signature'):
        del ckpt[key]
    torch.save(ckpt, path)
    resumed = Trainer(_model(data, seed=7), data, cfg, out_dir=str(tmp_path / 'b')).fit(
        resume=True)
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]


def _graph(train, val, test, num_entities=6):
    def rows(x):
        return torch.tensor(x, dtype=torch.long).view(-1, 3)

    return build_mmkg(num_entities, 2, {'train': rows(train), 'val': rows(val),
                                        'test': rows(test)})


def test_empty_splits_are_errors():
    rows = [[0, 0, 1], [1, 1, 2], [2, 0, 3]]

    def trainer(data, **kwargs):
        return Trainer(RotatE(6, 2, 4), data, _cfg(**kwargs))

    with pytest.raises(ValueError, match=r'the training split is empty'):
        trainer(_graph([], rows[:1], rows[1:]))
    with pytest.raises(ValueError, match=r"the validation split 'val_clean' is empty"):
        trainer(_graph(rows[:2], [], rows[2:]))
    with pytest.raises(ValueError, match=r'the cleaned validation split is empty: all 2 '
                       r'validation triples repeat training triples'):
        trainer(_graph(rows, rows[:2], rows[2:]))
    assert trainer(_graph(rows, rows[:2], rows[2:]), val_split='val').val_triples[0].numel()
    with pytest.raises(ValueError, match=r'the test split is empty'):
        trainer(_graph(rows[:2], rows[2:], []))
    trainer(_graph(rows[:2], rows[2:], []), test=False)


def test_mean_rank_is_minimised():
    data = _data()
    res = Trainer(_model(data), data, _cfg(epochs=6, eval_every=1, metric='mr')).fit()
    vals = {h['epoch']: h['val']['mr'] for h in res['history']}
    assert res['best_epoch'] == min(vals, key=vals.get)
    assert res['best_val'] == {'mr': min(vals.values())}
    # Guard: maximising MR would have picked another epoch on this run.
    assert max(vals, key=vals.get) != res['best_epoch']


class _Exploding(RotatE):
    r"""A RotatE whose loss is scaled up by 10 at each batch: finite, and diverging (Adam's
    steps do not depend on the scale, so the parameters stay finite)."""
    calls = 0

    def score_batch(self, *args, **kwargs):
        self.calls += 1
        out = super().score_batch(*args, **kwargs)
        pos = out.views[0][1]
        return out._replace(terms={**out.terms, 'explode': pos.new_tensor(10.0**self.calls)})


def test_finite_divergence_stops_training():
    data = _data()
    model = _Exploding(data[ENTITY].num_nodes, data.num_relations, 8, margin=2.0)
    with pytest.raises(TrainingDivergedError, match=r'training diverged: the mean loss of '
                       r'epoch 2 is .*e\+.*, more than divergence_factor=1000 times the first '
                       r"epoch's"):
        Trainer(model, data, _cfg(epochs=4)).fit()
    model = _Exploding(data[ENTITY].num_nodes, data.num_relations, 8, margin=2.0)
    res = Trainer(model, data, _cfg(epochs=2, divergence_factor=None)).fit()
    assert res['history'][-1]['loss'] > 1e15  # trained on regardless, as asked
    assert issubclass(NonFiniteLossError, TrainingDivergedError)


@pytest.mark.parametrize('kwargs,message', [
    (dict(lr='1e-3'), "lr must be a number, got the string '1e-3' \\(YAML 1.1"),
    (dict(epochs=2.5), 'epochs must be an integer, got 2.5'),
    (dict(epochs=True), 'epochs must be an integer, got True'),
    (dict(grad_clip=-1.0), 'grad_clip must be None or > 0'),
    (dict(patience=0), 'patience must be None or >= 1, got 0'),
    (dict(max_minutes=-1.0), 'max_minutes must be None or > 0, got -1.0'),
    (dict(metric='auc'), "metric must be one of \\['hits@1', 'hits@10', 'hits@3', 'mr', "
                         "'mrr'\\], got 'auc'"),
    (dict(lr=float('nan')), 'lr must be finite, got nan'),
    (dict(progress='no'), "progress must be true or false, got the string 'no'"),
    (dict(comat=[1]), 'comat must be a mapping, got \\[1\\]'),
    (dict(divergence_factor=0.5), 'divergence_factor must be None or > 1'),
])
def test_config_rejects(kwargs, message):
    with pytest.raises(ValueError, match='TrainConfig: ' + message):
        TrainConfig(**kwargs)


def test_checkpoint_every_needs_an_output_directory():
    data = _data()
    with pytest.raises(ValueError, match='checkpoint_every=2 needs an output directory'):
        Trainer(_model(data), data, _cfg(checkpoint_every=2))


def test_multimodal_resume_is_exact_and_refuses_other_features(tmp_path):
    from torch_mmkg.nn import NATIVE
    data = _data()

    def native(seed=0, data=data):
        seed_everything(seed)
        return NATIVE.from_data(data, 8, margin=2.0)

    cfg = _cfg(epochs=4, checkpoint_every=2)
    full = Trainer(native(), data, cfg, out_dir=str(tmp_path / 'a')).fit()
    Trainer(native(), data, cfg, out_dir=str(tmp_path / 'b')).fit(stop_after_epoch=3)
    other = data.clone()
    other[ENTITY].x_text = other[ENTITY].x_text * 2  # same shapes and masks, other values
    with pytest.raises(ValueError, match=r"checkpoint.pt: the checkpoint's model was trained on "
                       r"other features than this one \(x_text differs"):
        Trainer(native(data=other), other, cfg, out_dir=str(tmp_path / 'b')).fit(resume=True)
    resumed = Trainer(native(seed=5), data, cfg, out_dir=str(tmp_path / 'b')).fit(resume=True)
    assert [h['loss'] for h in resumed['history']] == [h['loss'] for h in full['history']]
    assert resumed['test']['realistic'] == full['test']['realistic']


class _RecordsDeterminism(RotatE):
    seen = None

    def score_batch(self, *args, **kwargs):
        self.seen = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
        return super().score_batch(*args, **kwargs)


@pytest.mark.parametrize('deterministic,expected', [(None, True), (True, True),
                                                    (False, False)])
def test_training_runs_deterministic_algorithms(deterministic, expected):
    # On a multi-threaded CPU the gradient of a gather with repeated ids (an embedding row
    # used twice in a batch) is summed by threads in any order unless PyTorch's deterministic
    # algorithms are on: two runs with one seed then drift apart (measured: TIVA, RotatE,
    # 2 threads, losses differ from epoch 1 on).
    data = _data()
    model = _RecordsDeterminism(data[ENTITY].num_nodes, data.num_relations, 8, margin=2.0)
    assert not torch.are_deterministic_algorithms_enabled()
    Trainer(model, data, _cfg(epochs=1, device='cpu', deterministic=deterministic)).fit()
    assert model.seen == (expected, True)
    assert not torch.are_deterministic_algorithms_enabled()  # restored afterwards


def test_openke_sampling_options_reach_the_loader():
    # corrupt_side_per and sample_with_replacement (issue 15): OpenKE's sampler draws the
    # side per negative and each epoch's positives with replacement, seeded by the config.
    data = _data()
    cfg = _cfg(corrupt_side_per='negative', sample_with_replacement=True, num_negatives=6)
    assert (cfg.corrupt_side_per, cfg.sample_with_replacement) == ('negative', True)

    def epoch(seed):
        trainer = Trainer(_model(data), data, dataclasses.replace(cfg, seed=seed))
        assert trainer.loader.replacement and trainer.regime.side_per == 'negative'
        return trainer, list(trainer.loader)

    trainer, batches = epoch(3)
    h, r, t = trainer.train_triples
    rows = torch.cat([torch.stack([b.head, b.rel, b.tail], 1) for b in batches])
    assert rows.size(0) == h.numel()  # as many draws as training triples
    assert torch.unique(rows, dim=0).size(0) < torch.unique(torch.stack([h, r, t], 1),
                                                            dim=0).size(0)  # repeats
    sides = torch.cat([b.negatives.corrupt_head for b in batches])
    assert sides.shape == (h.numel(), 6) and bool((sides.any(1) & (~sides).any(1)).any())
    _, again = epoch(3)
    assert all(torch.equal(a.head, b.head) and torch.equal(a.negatives.index,
                                                           b.negatives.index)
               for a, b in zip(batches, again))
    _, other = epoch(4)
    assert not torch.equal(batches[0].head, other[0].head)
    res = Trainer(_model(data), data, dataclasses.replace(cfg, epochs=2)).fit()
    assert res['config']['corrupt_side_per'] == 'negative' and res['epochs_trained'] == 2
    with pytest.raises(ValueError, match='corrupt_side_per applies to negative-sampling'):
        Trainer(_model(data), data, _cfg(regime='1-n', corrupt_side_per='negative'))
    with pytest.raises(ValueError, match="corrupt_side_per must be 'positive' or 'negative'"):
        TrainConfig(corrupt_side_per='both')


def test_exclude_query_entity_is_evaluated_and_reported():
    data = _data()
    res = Trainer(_model(data), data, _cfg(epochs=1, exclude_query_entity=True)).fit()
    assert res['test']['protocol']['query_entity_candidate'] is False
    assert res['test']['protocol']['filtered'] is True
    plain = Trainer(_model(data), data, _cfg(epochs=1)).fit()
    assert plain['test']['protocol']['query_entity_candidate'] is True
    # the ranks differ only where the query entity outscored the answer: never worse
    assert (res['test']['optimistic']['both']['mrr'] >=
            plain['test']['optimistic']['both']['mrr'])
