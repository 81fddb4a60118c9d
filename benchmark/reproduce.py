r"""The reproduction harness: methods x datasets x seeds under one stated budget, written as one
markdown table with the structural backbones and the two answer-frequency reference rows.

    python benchmark/reproduce.py --datasets DB15K --minutes 3 --seeds 0 1 2
    python benchmark/reproduce.py --datasets WN9-IMG --methods transe vbkgc_twins --minutes 3
    python benchmark/reproduce.py --table_only          # rewrite the table from the results

Every run trains with :class:`~torch_mmkg.training.Trainer` for at most ``--minutes`` of
training (and ``--epochs``), selects its checkpoint by MRR on ``val_clean`` every
``--eval_every`` epochs and evaluates the selected model once on the test split: filtered
against train + valid + test, both directions, realistic ranks (the mean of the optimistic and
the pessimistic rank; the optimistic MRR, which the OpenKE-based papers report, beside it).
The reference rows rank the answers by their training frequency for the query's relation and
globally (:class:`~torch_mmkg.evaluation.AnswerFrequency`): no training, no seed.

The harness is resumable: every finished run is kept in ``<out>/summary.json`` and skipped when
the command is run again (an interrupted run starts over). One harness process at a time may
use an output folder (a lock file says so), since two training processes on the same cores
slow each other and distort the budget.

The settings are a CPU budget, not the papers' (which train for 1000-2000 epochs on a GPU):
smaller dimensions, larger learning rates. The paper's number is printed beside ours for
orientation only.
"""
import argparse
import concurrent.futures
import fcntl
import multiprocessing
import os
import os.path as osp
import platform
import statistics
import sys
from typing import Any, Dict, List, NamedTuple, Optional

import torch

sys.path.insert(0, osp.dirname(osp.realpath(__file__)))
from _runs import METRICS, Summary, train_run  # noqa: E402
from graphs import load_graph, save_graph  # noqa: E402

from torch_mmkg.data import ENTITY, KnownTriples, get_triples  # noqa: E402
from torch_mmkg.datasets import DATASETS  # noqa: E402
from torch_mmkg.evaluation import AnswerFrequency, RankingEvaluator  # noqa: E402
from torch_mmkg.nn import MODELS  # noqa: E402
from torch_mmkg.nn.loss import MarginRankingLoss  # noqa: E402
from torch_mmkg.training import TrainConfig  # noqa: E402


class Method(NamedTuple):
    model: str
    model_args: Dict[str, Any]
    train: Dict[str, Any]
    backbone: Optional[str]  # the row name of its structural backbone
    label: str


def _ns(margin: float, temperature: float = 2.0, dim: int = 64) -> Dict[str, Any]:
    return {'hidden_channels': dim, 'margin': margin, 'adversarial_temperature': temperature}


#: Negative sampling at a CPU budget (the papers: d 250-500, lr 1e-4..1e-5, 1000+ epochs).
NS_TRAIN = {'batch_size': 1024, 'lr': 1e-3, 'num_negatives': 64}
#: 1-N at a CPU budget (the papers: d 200-300, batch 1024, lr 5e-4..1e-3, 2000 epochs).
ONE_N_TRAIN = {'batch_size': 512, 'lr': 1e-2, 'regime': '1-n', 'loss': 'softmax',
               'label_smoothing': 0.1}  # the quick start's
MOMOK = {'hidden_channels': 64}


def baselines(dataset: str) -> Dict[str, Method]:
    r"""The baselines of the field (issue 16) on :obj:`dataset`: each on the budget settings of
    its score function's family (TransE energies with negative sampling, DistMult, ComplEx and
    TuckER 1-N), with every modality the graph has."""
    dim = {'hidden_channels': 64}
    rows = {
        'distmult': Method('distmult', dict(dim), dict(ONE_N_TRAIN), None, 'DistMult'),
        'complex': Method('complex', dict(dim), dict(ONE_N_TRAIN), None, 'ComplEx'),
        'ikrl': Method('ikrl', dict(dim), dict(NS_TRAIN), 'transe', 'IKRL (four energies)'),
        'transae': Method('transae', dict(dim), dict(NS_TRAIN), 'transe', 'TransAE'),
        'mmkrl': Method('mmkrl', dict(dim), dict(NS_TRAIN), 'transe',
                        'MMKRL (without its adversarial part)'),
        'mmkrl_adv': Method('mmkrl', dict(dim), dict(NS_TRAIN, mmkrl_adversary={}), 'transe',
                            'MMKRL + adversarial training (†)'),
        'qeb': Method('qeb', dict(dim), dict(NS_TRAIN), 'transe', 'QEB'),
        # CoMAT on the earlier methods (NATIVE's Fig. 4)
        'ikrl_comat': Method('ikrl', dict(dim), dict(NS_TRAIN, comat={}), 'transe',
                             'IKRL + CoMAT'),
        'tbkgc_comat': Method('tbkgc', dict(dim), dict(NS_TRAIN, comat={}), 'transe',
                              'TBKGC + CoMAT'),
        'vbkgc_comat': Method('vbkgc', dict(dim), dict(NS_TRAIN, twins=True, comat={}),
                              'transe', 'VBKGC + twins + CoMAT'),
        # the authors' scripts run MAT with mu = 0: their "AdaMF-MAT" is AdaMF
        'adamf': Method('adamf', _ns(12.0), dict(NS_TRAIN), 'rotate', 'AdaMF'),
        'adamf_mat': Method('adamf', _ns(12.0), dict(NS_TRAIN, mat={}), 'rotate',
                            'AdaMF-MAT (mu 1e-4)'),
        'imf': Method('imf', dict(dim), dict(ONE_N_TRAIN), 'tucker', 'IMF (equal weights)'),
        'mose': Method('mose', dict(dim), dict(ONE_N_TRAIN), 'complex', 'MoSE-AI'),
        # transformers: the authors' lr and gradient clipping
        'vista': Method('vista', dict(dim), dict(ONE_N_TRAIN, lr=1e-3, grad_clip=0.1), 'tucker',
                        'VISTA (all entities re-encoded per step)'),
        'vista_batch': Method('vista', dict(dim, encode_all=False),
                              dict(ONE_N_TRAIN, lr=1e-3, grad_clip=0.1), 'tucker',
                              'VISTA (batch re-encoded, cached table)'),
        'mygo': Method('mygo', dict(dim, encode_all=False),
                       dict(ONE_N_TRAIN, lr=1e-3, grad_clip=0.1), 'tucker',
                       'MyGO (dense modalities as tokens; batch re-encoded, cached table)'),
    }
    # RSME and OTKGE take an image; the offline graphs have text (and DB15K numbers)
    rows['rsme'] = Method('rsme', dict(dim, modalities=['text']), dict(ONE_N_TRAIN), 'complex',
                          'RSME (text as its image, MRP forget gate)')
    rows['otkge'] = Method('otkge', dict(dim), dict(ONE_N_TRAIN), 'complex', 'OTKGE')
    # the negative-sampling methods are regimes on a model
    rows['kbgan'] = Method('transe', dict(dim), dict(NS_TRAIN, regime='kbgan', num_negatives=1,
                                                     sampling='bernoulli'),
                           'transe', 'TransE + KBGAN (DistMult generator)')
    rows['mans'] = Method('ikrl', dict(dim), dict(NS_TRAIN, regime='mans',
                                                  regime_args={'mode': 'A'}),
                          'ikrl', 'IKRL + MANS-A')
    visual = 'numeric' if dataset == 'DB15K' else 'text'
    rows['mmrns'] = Method('transe', dict(dim), dict(
        NS_TRAIN, regime='mmrns', num_negatives=20, batch_size=400,
        regime_args={'visual': visual, 'textual': 'text'}), 'transe',
        f'TransE + MMRNS ({visual} as its visual view)')
    if dataset == 'DB15K':  # numeric attributes: LiteralE's and KBLN's input
        rows['literale'] = Method('literale', dict(dim, modalities=['numeric']),
                                  dict(ONE_N_TRAIN), 'distmult', 'LiteralE (gated, DistMult)')
        # KBLN's one-vs-all costs ~80 CPU minutes per epoch on DB15K: negative sampling
        rows['kbln'] = Method('kbln', dict(dim, modalities=['numeric']),
                              dict(NS_TRAIN, regime='negative_sampling'), 'distmult',
                              'KBLN (negative sampling)')
    else:  # no numeric literals: the text vector as the literal (LiteralE's text variant)
        rows['literale'] = Method('literale', dict(dim, modalities=['text']),
                                  dict(ONE_N_TRAIN), 'distmult',
                                  'LiteralE (gated, DistMult, text literals)')
    return rows


def methods(dataset: str) -> Dict[str, Method]:
    r"""The rows of :obj:`dataset`: backbones first, then the multi-modal methods."""
    gamma = {'DB15K': 12.0}.get(dataset, 4.0)
    if dataset == 'WN9-IMG':  # VBKGC's settings: d 128, 16 negatives, margin 8, ~100 batches
        train = {'batch_size': 118, 'lr': 1e-3, 'num_negatives': 16, 'filter_negatives': True}
        return {
            'transe': Method('transe', {'hidden_channels': 128, 'normalize': True,
                                        'loss': MarginRankingLoss(8.0)}, dict(train), None,
                             'TransE (margin 8, L2-normalised)'),
            'vbkgc_twins': Method('vbkgc', {'hidden_channels': 128, 'modalities': ['gloss'],
                                            'margin': 8.0, 'loss_aggregate': 'pairwise'},
                                  dict(train, twins=True), 'transe', 'VBKGC + twins'),
        }
    return {
        'rotate': Method('rotate', {'hidden_channels': 64, 'margin': gamma}, dict(NS_TRAIN),
                         None, 'RotatE'),
        'transe': Method('transe', {'hidden_channels': 64}, dict(NS_TRAIN), None, 'TransE'),
        'tucker': Method('tucker', {'hidden_channels': 64}, dict(ONE_N_TRAIN), None, 'TuckER'),
        'native': Method('native', _ns(gamma), dict(NS_TRAIN), 'rotate', 'NATIVE w/o CoMAT'),
        'native_comat': Method('native', _ns(gamma), dict(NS_TRAIN, comat={}), 'rotate',
                               'NATIVE'),
        'lbmkgc': Method('lbmkgc', _ns({'DB15K': 12.0, 'MKG-W': 16.0}.get(dataset, 24.0), 4.0),
                         dict(NS_TRAIN), 'rotate', 'LBMKGC'),
        'tbkgc': Method('tbkgc', {'hidden_channels': 64}, dict(NS_TRAIN), 'transe', 'TBKGC'),
        'vbkgc': Method('vbkgc', {'hidden_channels': 64}, dict(NS_TRAIN, twins=True), 'transe',
                        'VBKGC + twins'),
        'momok': Method('momok', dict(MOMOK), dict(ONE_N_TRAIN), 'tucker', 'MoMoK'),
        **baselines(dataset),
    }


#: Test MRR (%) in the papers' tables (NATIVE's Table 1 for the structural and earlier
#: multi-modal rows, MoMoK's Table 1 for TuckER, LBMKGC's Table 1, VBKGC's Table 2; for the
#: baselines of issue 16 MoMoK's Table 1, KBGAN from NATIVE's Table 2, AdaMF-MAT and MyGO from
#: LBMKGC's Table 1). MMKRL's number is its adversarial version's (NATIVE's †), the row
#: mmkrl_adv.
PAPER = {
    'DB15K': {'rotate': 29.28, 'transe': 24.86, 'tucker': 33.86, 'native_comat': 37.16,
              'lbmkgc': 37.23, 'tbkgc': 28.40, 'vbkgc': 30.61, 'momok': 39.57,
              'distmult': 23.03, 'complex': 27.48, 'ikrl': 26.82, 'transae': 28.09,
              'mmkrl_adv': 26.81, 'rsme': 29.76, 'otkge': 23.86, 'mose': 28.38, 'imf': 32.25,
              'qeb': 28.18, 'vista': 30.42, 'adamf': 32.51, 'adamf_mat': 35.14, 'mans': 28.82,
              'mmrns': 32.68, 'kbgan': 25.73, 'mygo': 37.17},
    'MKG-W': {'rotate': 33.67, 'transe': 29.19, 'tucker': 29.59, 'native_comat': 36.58,
              'lbmkgc': 38.46, 'tbkgc': 31.48, 'vbkgc': 30.61, 'momok': 35.89,
              'distmult': 20.99, 'complex': 24.93, 'ikrl': 32.36, 'transae': 30.00,
              'mmkrl_adv': 30.10, 'rsme': 29.23, 'otkge': 34.36, 'mose': 33.34, 'imf': 34.50,
              'qeb': 32.38, 'vista': 32.91, 'adamf': 34.27, 'adamf_mat': 35.77, 'mans': 30.88,
              'mmrns': 35.03, 'kbgan': 29.47, 'mygo': 36.09},
    'MKG-Y': {'rotate': 34.95, 'transe': 30.73, 'tucker': 37.05, 'native_comat': 39.04,
              'lbmkgc': 40.03, 'tbkgc': 33.99, 'vbkgc': 37.04, 'momok': 37.91},
    'WN9-IMG': {'transe': 76.6, 'vbkgc_twins': 85.7},
}
FREQUENCY = {'frequency_relation': ('per-relation answer frequency', True),
             'frequency_global': ('global answer frequency', False)}


def build_model(method: Method, data):
    args = dict(method.model_args)
    dim = args.pop('hidden_channels')
    cls = MODELS[method.model]
    if hasattr(cls, 'from_data'):
        return cls.from_data(data, dim, **args)
    return cls(data[ENTITY].num_nodes, data.num_relations, dim, **args)


def _isolated_run(key: str, method: Method, graph: str, cfg: Dict[str, Any], seed: int,
                  out: str) -> Dict[str, Any]:
    # One run in a fresh process, so that its peak resident memory is its own.
    data = load_graph(graph)
    torch.manual_seed(seed)
    model = build_model(method, data)
    return {**train_run(key, model, data, TrainConfig.from_dict(cfg), out), 'isolated': True}


def run_isolated(key: str, method: Method, graph: str, cfg: Dict[str, Any], seed: int,
                 out: str) -> Dict[str, Any]:
    r"""Trains one run in a fresh (spawned) process and returns its entry
    (:func:`_runs.train_run`); the process reads the graph from :obj:`graph`, a file of
    :func:`graphs.save_graph` (tensors and plain containers only)."""
    ctx = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_isolated_run, key, method, graph, cfg, seed, out).result()


def frequency_rows(summary: Summary, dataset: str, data, exclude_query_entity: bool = False):
    known = KnownTriples.from_data(data, 'all')
    evaluator = RankingEvaluator(known, exclude_query_entity=exclude_query_entity)
    test = get_triples(data, 'test')
    for key, (_, per_relation) in FREQUENCY.items():
        name = f'{dataset}/{key}'
        if name in summary:
            continue
        res = evaluator.evaluate(AnswerFrequency.from_data(data, per_relation), *test)
        summary[name] = {**{k: 100 * res.metrics()[k] for k in METRICS},
                         **{f'optimistic_{k}': 100 * res.metrics('optimistic')[k]
                            for k in METRICS}, 'epochs': 0}
        summary.write()


def _stats(entries: List[Dict[str, Any]], key: str):
    values = [e[key] for e in entries if key in e]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(mean, std, count: int = 2) -> str:
    # one run (a single seed, or a frequency row) has no spread to print
    if mean is None:
        return '—'
    return f'{mean:.2f}' if count < 2 else f'{mean:.2f} ± {std:.2f}'


def _cost(entries: List[Dict[str, Any]]) -> str:
    # The median seconds per epoch, and the largest peak memory over the seeds of the runs
    # that had a process of their own (a run in a shared process reports the process's peak
    # so far), with in brackets what training added to the data and the model.
    # Runs whose epochs were matched to another seed's ran on a machine that was not quiet:
    # their times are left out (their memory is not affected).
    per_epoch = [e['seconds_per_epoch'] for e in entries if e.get('seconds_per_epoch')
                 and 'epochs_matched_to_seed' not in e]
    if not per_epoch:
        return '— | —'
    gib, mib = 1024 ** 3, 1024 ** 2
    cuda = [e['peak_memory']['cuda_max_allocated_bytes'] for e in entries
            if 'cuda_max_allocated_bytes' in e.get('peak_memory', {})]
    own = [e for e in entries if e.get('isolated')]
    if cuda:
        memory = f'{max(cuda) / gib:.2f} (GPU)'
    elif own:
        peak = max(e['peak_memory']['cpu_max_rss_bytes'] for e in own)
        added = max(e['peak_memory']['cpu_max_rss_bytes'] - e['rss_before_training_bytes']
                    for e in own)
        memory = f'{peak / gib:.2f} (+{added / mib:.0f} MiB)'
    else:
        memory = '—'
    return f'{statistics.median(per_epoch):.2f} | {memory}'


def _seeds(done: int, diverged: int, name: str, matched: int = 0) -> str:
    if name in FREQUENCY:
        return '—'
    text = f'{done} ({matched}*)' if matched else str(done)
    return f'{text} (+{diverged} diverged)' if diverged else text


def _matched(entries: List[Dict[str, Any]]) -> int:
    return sum(1 for e in entries if 'epochs_matched_to_seed' in e)


def table(summary: Dict[str, Any], settings: Dict[str, Any]) -> str:
    r"""The markdown table of every dataset in :obj:`summary`."""
    budget = (f"{settings['minutes']} min of training per run (at most {settings['epochs']} "
              f"epochs)" if settings['minutes'] else f"{settings['epochs']} epochs per run")
    seeds = sorted({int(k.rsplit('/seed', 1)[1]) for k in summary if '/seed' in k}
                   or set(settings['seeds']))
    lines = [f"Budget: {budget}, {settings['device']}, torch "
             f"{settings['torch']}, {settings['threads']} threads; seeds "
             f"{', '.join(map(str, seeds))} (the seeds column says how many each row has). "
             f"Protocol: filtered (train + valid + "
             f"test), both directions, realistic ranks (optimistic MRR beside them), selection "
             f"by MRR on `val_clean`, one test evaluation of the selected model; the query "
             f"entity {'is not' if settings.get('exclude_query_entity') else 'is'} a candidate "
             f"of its own query. Mean ± std over the seeds (the frequency rows have none).", '']
    matched = sorted({e['epochs_matched_to_seed'] for e in summary.values()
                      if isinstance(e, dict) and 'epochs_matched_to_seed' in e})
    if matched:
        count = sum(1 for e in summary.values()
                    if isinstance(e, dict) and 'epochs_matched_to_seed' in e)
        lines[0] += (f" {count} runs (counted after the * in the seeds column) were trained, on "
                     f"a machine that was not quiet, for the number of epochs seed "
                     f"{', '.join(map(str, matched))} of the same method reached within the "
                     f"budget instead of for the budget; their seconds per epoch are left out.")
    datasets = sorted({k.split('/')[0] for k in summary if '/' in k})
    for dataset in datasets:
        lines += [f'**{dataset}**', '',
                  '| method | MRR | H@1 | H@3 | H@10 | MRR (optimistic) | paper MRR | epochs '
                  '| s/epoch | peak memory GiB (+ training) | seeds '
                  '| beats backbone and both frequency rows |',
                  '|---|---|---|---|---|---|---|---|---|---|---|---|']
        rows: Dict[str, List[Dict[str, Any]]] = {}
        diverged: Dict[str, int] = {}
        for key, entry in summary.items():
            parts = key.split('/')
            if parts[0] == dataset and 'mrr' in entry:
                rows.setdefault(parts[1], []).append(entry)
            elif parts[0] == dataset and 'diverged' in entry:
                diverged[parts[1]] = diverged.get(parts[1], 0) + 1
        specs = methods(dataset)
        freq = {k: _stats(rows[k], 'mrr')[0] for k in FREQUENCY if k in rows}
        order = list(FREQUENCY) + [m for m in specs if specs[m].backbone is None] + [
            m for m in specs if specs[m].backbone is not None]
        for name in order:
            if name not in rows:
                continue
            entries = rows[name]
            cells = [_cell(*_stats(entries, k), len(entries)) for k in METRICS]
            mean, std = _stats(entries, 'mrr')
            verdict = ''
            if name in specs and specs[name].backbone is not None:
                bb = specs[name].backbone
                b_mean, b_std = _stats(rows.get(bb, []), 'mrr')
                if b_mean is None or len(freq) < 2:
                    verdict = 'no backbone or frequency rows'
                elif len(entries) < 2 or len(rows[bb]) < 2:  # no spread to judge by
                    verdict = (f"{mean - b_mean:+.2f} vs {specs[bb].label} (one seed: no "
                               f"verdict)")
                else:
                    spread = max(std, b_std)
                    ok = mean - b_mean > spread and all(mean - f > spread
                                                        for f in freq.values())
                    verdict = (f"{'yes' if ok else 'no'} ({mean - b_mean:+.2f} vs "
                               f"{specs[bb].label}, spread {spread:.2f})")
            label = FREQUENCY[name][0] if name in FREQUENCY else specs[name].label
            paper = PAPER.get(dataset, {}).get(name)
            epochs = _stats(entries, 'epochs')[0]
            lines.append(f"| {label} | {' | '.join(cells)} | "
                         f"{_cell(*_stats(entries, 'optimistic_mrr'), len(entries))} | "
                         f"{'—' if paper is None else f'{paper:.2f}'} | {epochs:.0f} | "
                         f"{_cost(entries)} | "
                         f"{_seeds(len(entries), diverged.get(name, 0), name, _matched(entries))}"
                         f" | {verdict} |")
        lines.append('')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--datasets', nargs='+', default=['DB15K'])
    parser.add_argument('--methods', nargs='*', default=None,
                        help='row names (default: all of the dataset)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--minutes', type=float, default=3.0,
                        help='training budget per run (0: none, --epochs only)')
    parser.add_argument('--epochs', type=int, default=1000)
    parser.add_argument('--match_epochs_of_seed', type=int, default=None, metavar='SEED',
                        help='train each run for the epochs the same method reached with '
                             'this seed (no time budget): for seeds run on a machine that '
                             "is not quiet, whose minutes would buy fewer epochs")
    parser.add_argument('--eval_every', type=int, default=2)
    parser.add_argument('--exclude_query_entity', action='store_true')
    parser.add_argument('--root', default=osp.join(osp.dirname(osp.realpath(__file__)), '..',
                                                   'data'))
    parser.add_argument('--out', default=osp.join('runs', 'reproduce'))
    parser.add_argument('--device', default='auto')
    parser.add_argument('--table_only', action='store_true')
    parser.add_argument('--isolate', action=argparse.BooleanOptionalAction, default=True,
                        help='train every run in a fresh process, so that its peak memory '
                             'is its own (default); --no-isolate trains in this process')
    args = parser.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    lock = open(osp.join(args.out, '.lock'), 'w')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"another harness process is using {args.out}: one at a time", file=sys.stderr)
        return 2
    device = torch.device('cuda' if args.device == 'auto' and torch.cuda.is_available() else
                          ('cpu' if args.device == 'auto' else args.device))
    settings = {'minutes': args.minutes, 'epochs': args.epochs, 'seeds': args.seeds,
                'eval_every': args.eval_every, 'threads': torch.get_num_threads(),
                'torch': torch.__version__, 'exclude_query_entity': args.exclude_query_entity,
                'device': (torch.cuda.get_device_name(device) if device.type == 'cuda' else
                           f'CPU ({platform.processor() or platform.machine()}, '
                           f'{os.cpu_count()} cores)')}
    summary = Summary(args.out, settings)
    if args.table_only and summary.stored_settings:  # the settings the runs were made with
        settings = summary.stored_settings
    if not args.table_only:
        for dataset in args.datasets:
            if dataset not in DATASETS:
                print(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}",
                      file=sys.stderr)
                return 2
            data = DATASETS[dataset](osp.join(args.root, dataset))[0]
            frequency_rows(summary, dataset, data, args.exclude_query_entity)
            specs = methods(dataset)
            graph = osp.join(args.out, f'{dataset}.graph.pt')  # what the run processes read
            if args.isolate:
                save_graph(data, graph)
            unknown = sorted(set(args.methods or ()) - set(specs))
            if unknown:
                print(f"no method {unknown} on {dataset}; have {sorted(specs)}",
                      file=sys.stderr)
                return 2
            for seed in args.seeds:
                for name, method in specs.items():
                    if args.methods and name not in args.methods:
                        continue
                    key = f'{dataset}/{name}/seed{seed}'
                    if key in summary:
                        continue
                    cfg = {'epochs': args.epochs, 'max_minutes': args.minutes or None,
                           'eval_every': args.eval_every, 'seed': seed, 'progress': False,
                           'device': str(device),
                           'exclude_query_entity': args.exclude_query_entity, **method.train}
                    matched = None
                    if args.match_epochs_of_seed is not None:
                        reference = summary.get(
                            f'{dataset}/{name}/seed{args.match_epochs_of_seed}', {})
                        if 'epochs' not in reference:
                            print(f"skip {key}: no run of seed {args.match_epochs_of_seed} "
                                  f"to match", file=sys.stderr)
                            continue
                        matched = args.match_epochs_of_seed
                        cfg.update(epochs=reference['epochs'], max_minutes=None)
                    if args.isolate:
                        entry = run_isolated(key, method, graph, cfg, seed, args.out)
                        if matched is not None:  # its time was not measured on a quiet machine
                            entry['epochs_matched_to_seed'] = matched
                        summary.record(key, entry)
                        continue
                    torch.manual_seed(seed)
                    model = build_model(method, data)
                    summary.run(key, model, data, TrainConfig.from_dict(cfg))  # writes
                    if matched is not None and key in summary:
                        summary[key]['epochs_matched_to_seed'] = matched
                        summary.write()
    text = table(dict(summary), settings)
    with open(osp.join(args.out, 'table.md'), 'w') as f:
        f.write(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
