r"""The scale benchmark: synthetic multi-modal KGs from 10^4 to 10^6 entities with image-like
features on disk, trained by one and by two processes.

    python benchmark/scale.py --entities 10000 100000 --out /tmp/scale
    python benchmark/scale.py --entities 10000 --epochs 10 --out /tmp/scale_learn  # learning
    python benchmark/scale.py --entities 1000000 --procs 1 --triples-per-entity 1 \
        --holdout 0.001 --epochs 1 --out /tmp/scale   # 15.3 GiB of features

The generator plants a signal: the entities fall into clusters, relation :math:`r` maps an
entity of cluster :math:`c` to a random entity of cluster :math:`(c + r + 1) \bmod C`, and an
entity's image-like feature is its cluster's centroid plus noise (present for a share of the
entities, masked elsewhere). A model that reads the features can tell the clusters apart, so the
tail's cluster is learnable. The graph is written in the OpenKE layout of
:class:`~torch_mmkg.datasets.MMKGFolder`, and the features as a float32 ``.npy`` file written
in blocks, so that generating never holds the matrix in memory; the folder is read with
:obj:`mmap=True`, so that training never does either.

Each configuration trains in a process of its own (:obj:`torchrun` for several), through the
command line, and the table reports seconds per epoch, evaluation queries per second, the peak
resident memory of rank 0 (beside the size of the feature file) and the test MRR, beside the
MRR of a ranker that knows the planted clusters and of a random one (:func:`reference_mrr`).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np


def generate(folder: str, num_entities: int, dim: int = 4096, triples_per_entity: int = 10,
             num_relations: int = 8, num_clusters: int = 50, present: float = 0.8,
             noise: float = 0.5, holdout: float = 0.01, seed: int = 0,
             block: int = 8192) -> Dict[str, int]:
    r"""Writes a synthetic MMKG with a planted signal into :obj:`folder` (OpenKE layout,
    :obj:`features/image.npy` and :obj:`features/image_mask.npy`); returns its sizes. An
    existing complete folder with the same parameters is kept."""
    params = dict(num_entities=num_entities, dim=dim, triples_per_entity=triples_per_entity,
                  num_relations=num_relations, num_clusters=num_clusters, present=present,
                  noise=noise, holdout=holdout, seed=seed)
    stamp = osp.join(folder, 'generated.json')
    if osp.exists(stamp):
        with open(stamp) as f:
            done = json.load(f)
        if done.get('params') == params:
            return done['sizes']
    os.makedirs(osp.join(folder, 'features'), exist_ok=True)
    rng = np.random.default_rng(seed)
    N, R, C = num_entities, num_relations, num_clusters
    cluster = rng.integers(0, C, N)
    members = [np.flatnonzero(cluster == c) for c in range(C)]
    E = N * triples_per_entity
    h = rng.integers(0, N, E)
    r = rng.integers(0, R, E)
    target = (cluster[h] + r + 1) % C
    t = np.empty(E, dtype=np.int64)
    for c in range(C):  # a random member of the target cluster
        sel = np.flatnonzero(target == c)
        t[sel] = members[c][rng.integers(0, len(members[c]), sel.size)]
    triples = np.unique(np.stack([h, t, r], 1), axis=0)
    triples = triples[rng.permutation(len(triples))]
    n_hold = max(1, int(holdout * len(triples)))
    splits = {'test2id.txt': triples[:n_hold], 'valid2id.txt': triples[n_hold:2 * n_hold],
              'train2id.txt': triples[2 * n_hold:]}
    for name, rows in splits.items():
        with open(osp.join(folder, name), 'w') as f:
            f.write(f'{len(rows)}\n')
            np.savetxt(f, rows, fmt='%d')
    with open(osp.join(folder, 'entity2id.txt'), 'w') as f:
        f.write(f'{N}\n')
        f.writelines(f'e{i}\t{i}\n' for i in range(N))
    with open(osp.join(folder, 'relation2id.txt'), 'w') as f:
        f.write(f'{R}\n')
        f.writelines(f'r{i}\t{i}\n' for i in range(R))
    centroids = rng.standard_normal((C, dim)).astype(np.float32)
    mask = rng.random(N) < present
    x = np.lib.format.open_memmap(osp.join(folder, 'features', 'image.npy'), mode='w+',
                                  dtype=np.float32, shape=(N, dim))
    for start in range(0, N, block):  # block by block: never the whole matrix in memory
        end = min(N, start + block)
        rows = centroids[cluster[start:end]] + noise * rng.standard_normal(
            (end - start, dim), dtype=np.float32)
        rows[~mask[start:end]] = 0
        x[start:end] = rows
    x.flush()
    del x
    np.save(osp.join(folder, 'features', 'image_mask.npy'), mask)
    np.save(osp.join(folder, 'clusters.npy'), cluster)  # the planted truth, for checks
    sizes = {'entities': N, 'relations': R, 'train': len(splits['train2id.txt']),
             'valid': n_hold, 'test': n_hold,
             'feature_bytes': int(osp.getsize(osp.join(folder, 'features', 'image.npy')))}
    with open(stamp, 'w') as f:
        json.dump({'params': params, 'sizes': sizes}, f)
    return sizes


def _read_triples(path: str) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64, skiprows=1, ndmin=2)  # rows (head, tail, relation)


def reference_mrr(folder: str) -> Dict[str, float]:
    r"""The filtered test MRR of two reference rankers of the planted signal, in closed form.
    :obj:`"oracle"` knows the clusters: it ranks the target cluster's members first, in random
    order, so the answer's expected reciprocal rank is :math:`H_m / m` over the :math:`m`
    candidates of that cluster left after filtering (:math:`H_m` the harmonic number).
    :obj:`"chance"` ranks all :math:`n` filtered candidates at random, :math:`H_n / n`. A model
    that learned the planted signal scores between the two, near the oracle."""
    cluster = np.load(osp.join(folder, 'clusters.npy'))
    N, C = len(cluster), int(cluster.max()) + 1
    size = np.bincount(cluster, minlength=C)
    parts = [_read_triples(osp.join(folder, f)) for f in
             ('train2id.txt', 'valid2id.txt', 'test2id.txt')]
    known, test = np.concatenate(parts), parts[2]
    R = int(known[:, 2].max()) + 1
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, N + 1))])
    oracle, chance = [], []
    for side in (1, 0):  # tails (h, r, ?) then heads (?, r, t)
        keep = 1 - side  # the entity the query keeps
        uniq, counts = np.unique(known[:, keep] * R + known[:, 2], return_counts=True)
        answers = counts[np.searchsorted(uniq, test[:, keep] * R + test[:, 2])]
        # every answer of a query lies in its target cluster (the generator's rule), so
        # filtering leaves m = |cluster| - answers + 1 candidates there, n in all
        m = size[cluster[test[:, side]]] - answers + 1
        n = N - answers + 1
        oracle.append(harmonic[m] / m)
        chance.append(harmonic[n] / n)
    return {'oracle': float(np.concatenate(oracle).mean()),
            'chance': float(np.concatenate(chance).mean())}


def run(folder: str, out: str, procs: int, model: str, args: List[str]) -> Dict:
    r"""Trains one configuration through the command line (torchrun for several processes)
    and returns the run's results."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           f'--nproc_per_node={procs}', '-m', 'torch_mmkg', 'train', '--dataset', folder,
           '--dataset-arg', 'mmap=true', '--model', model, '--out', out, '--progress',
           'false', *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // procs)))
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-4000:]}")
    with open(osp.join(out, 'results.json')) as f:
        results = json.load(f)
    results['wall_seconds'] = time.perf_counter() - start
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--entities', type=int, nargs='+', default=[10000, 100000])
    parser.add_argument('--dim', type=int, default=4096, help='feature size (default: 4096)')
    parser.add_argument('--procs', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--triples-per-entity', type=int, default=10)
    parser.add_argument('--holdout', type=float, default=0.01,
                        help='share of the triples in each of valid and test')
    parser.add_argument('--model', default='native')
    parser.add_argument('--hidden', type=int, default=32, help='embedding size')
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--num-negatives', type=int, default=16)
    parser.add_argument('--out', default=osp.join('runs', 'scale'))
    args = parser.parse_args(argv)
    rows = []
    for n in args.entities:
        folder = osp.join(args.out, f'kg_{n}' + (
            '' if (args.triples_per_entity, args.holdout) == (10, 0.01) else
            f'_{args.triples_per_entity}_{args.holdout:g}'))
        t0 = time.perf_counter()
        sizes = generate(folder, n, args.dim, triples_per_entity=args.triples_per_entity,
                         holdout=args.holdout)
        print(f"{n} entities: {sizes} ({time.perf_counter() - t0:.0f} s to generate)",
              flush=True)
        reference = reference_mrr(folder)
        for p in args.procs:
            res = run(folder, osp.join(args.out, f'run_{osp.basename(folder)}_{p}'), p,
                      args.model, [
                '--dim', str(args.hidden), '--epochs', str(args.epochs), '--eval-every', '1',
                '--batch-size', str(args.batch_size), '--num-negatives',
                str(args.num_negatives), '--lr', '0.01'])
            test = res['test']
            row = {'entities': n, 'procs': p, 'train_triples': sizes['train'],
                   'feature_gib': sizes['feature_bytes'] / 2**30,
                   # after the first epoch, which compiles the fused kernels
                   'seconds_per_epoch': statistics.median(
                       [h['seconds'] for h in res['history']][1:] or
                       [res['history'][0]['seconds']]),
                   'eval_queries_per_s': test['num_queries'] / test['seconds'],
                   'peak_rss_gib': res['peak_memory']['cpu_max_rss_bytes'] / 2**30,
                   'test_mrr': 100 * test['realistic']['both']['mrr'],
                   'oracle_mrr': 100 * reference['oracle'],
                   'chance_mrr': 100 * reference['chance'],
                   'wall_seconds': res['wall_seconds']}
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(osp.join(args.out, 'scale.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    print('| entities | processes | train triples | feature file GiB | s/epoch | eval queries/s '
          '| peak RSS GiB (rank 0) | test MRR % | cluster oracle % | chance % |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['entities']:,} | {r['procs']} | {r['train_triples']:,} | "
              f"{r['feature_gib']:.2f} | {r['seconds_per_epoch']:.1f} | "
              f"{r['eval_queries_per_s']:.0f} | {r['peak_rss_gib']:.2f} | {r['test_mrr']:.2f} | "
              f"{r['oracle_mrr']:.2f} | {r['chance_mrr']:.2f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
