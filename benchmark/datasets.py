r"""Every dataset as loaded: sizes (checked against the papers and the files), modalities with
coverage, and processing time (first run, then cached).

    TORCH_MMKG_MIRROR=../shared/mirror python benchmark/datasets.py [--root DIR] [--keep]

The first run processes each dataset from scratch in a fresh root (raw files from the mirror,
text encoded by the offline sentence encoder); the second loads the cache.
"""
import argparse
import json
import shutil
import tempfile
import time
import warnings

from torch_mmkg.datasets import DB15K, KVC16K, MKGW, MKGY, TIVA, WN9IMG

# (entities, relations, train, valid, test): NATIVE Table 1 (DB15K's valid/test swapped there;
# these are the files' counts), IKRL/VBKGC for WN9-IMG.
EXPECTED = {
    'MKG-W': (MKGW, (15000, 169, 34196, 4276, 4274)),
    'MKG-Y': (MKGY, (15000, 28, 21310, 2665, 2663)),
    'DB15K': (DB15K, (12842, 279, 79222, 9904, 9902)),
    'KVC16K': (KVC16K, (16015, 4, 180190, 22523, 22525)),
    'TIVA': (TIVA, (11858, 16, 20071, 2000, 2000)),
    'WN9-IMG': (WN9IMG, (6555, 9, 11741, 1337, 1319)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default=None, help='dataset root (default: a temp dir)')
    parser.add_argument('--keep', action='store_true', help='keep the processed datasets')
    parser.add_argument('--json', default=None, help='also write the table as JSON')
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix='torch_mmkg_bench_')

    rows = []
    for name, (cls, expected) in EXPECTED.items():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            t0 = time.perf_counter()
            ds = cls(f'{root}/{name}', force_reload=True, log=False)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            ds = cls(f'{root}/{name}', log=False)
            cached = time.perf_counter() - t0
        data = ds[0]
        rep = ds.split_report
        got = (data['entity'].num_nodes, data.num_relations, rep['rows']['train'],
               rep['rows']['val'], rep['rows']['test'])
        if got != expected:
            raise SystemExit(f'{name}: loaded {got}, expected {expected}')
        rows.append(dict(dataset=name, entities=got[0], relations=got[1], train=got[2],
                         valid=got[3], test=got[4], val_clean=rep['val_clean'],
                         modalities={m: dict(dim=d, entities=c)
                                     for m, (d, c) in ds.modality_stats().items()},
                         first_run_s=round(first, 2), cached_s=round(cached, 3)))

    header = (f"| {'dataset':<8} | {'entities':>8} | {'rel.':>4} | {'train':>7} | {'valid':>6} | "
              f"{'test':>6} | {'val_clean':>9} | {'modalities (dim: entities with it)':<46} | "
              f"{'first run':>9} | {'cached':>7} |")
    print(header)
    print('|' + '|'.join('-' * (len(c) + 0) for c in header.split('|')[1:-1]) + '|')
    for r in rows:
        mods = ', '.join(f"{m} {v['dim']}: {v['entities']}" for m, v in r['modalities'].items())
        print(f"| {r['dataset']:<8} | {r['entities']:>8} | {r['relations']:>4} | "
              f"{r['train']:>7} | {r['valid']:>6} | {r['test']:>6} | {r['val_clean']:>9} | "
              f"{mods or 'structure only':<46} | {r['first_run_s']:>8.1f}s | "
              f"{r['cached_s']:>6.2f}s |")
    print('All counts equal the papers\' Table 1 and the files.')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    if not args.keep and args.root is None:
        shutil.rmtree(root)


if __name__ == '__main__':
    main()
