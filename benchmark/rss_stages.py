r"""Peak and current resident memory after each stage of a run on a disk-backed folder written
by ``benchmark/scale.py``:

    python benchmark/rss_stages.py /tmp/scale/kg_100000

(It steps the trainer batch by batch with its one-step method, to stop after 20 batches.)
"""
import resource
import sys

import torch  # noqa: F401 (the first stage is the import)


def rss():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with open('/proc/self/statm') as f:
        current = int(f.read().split()[1]) * 4096 / 2**30
    return f'peak {peak:.2f} GiB, current {current:.2f} GiB'


def main(folder: str):
    print('import', rss(), flush=True)
    from torch_mmkg.data import get_triples
    from torch_mmkg.datasets import MMKGFolder
    from torch_mmkg.experiment.data import data_fingerprint
    from torch_mmkg.nn import NATIVE
    from torch_mmkg.training import TrainConfig, Trainer
    data = MMKGFolder(folder, mmap=True)[0]
    print('dataset', rss(), flush=True)
    data_fingerprint(data)
    print('data fingerprint', rss(), flush=True)
    model = NATIVE.from_data(data, 32)
    print('model', rss(), flush=True)
    trainer = Trainer(model, data, TrainConfig(epochs=1, batch_size=2048, num_negatives=16,
                                               progress=False, device='cpu'))
    print('trainer', rss(), flush=True)
    for i, batch in enumerate(trainer.loader):
        trainer._train_step(batch, 1, i, 1.0)
        if i == 19:
            break
    print('20 batches', rss(), flush=True)
    h, r, t = get_triples(data, 'test')
    trainer.evaluator.evaluate(model, h[:500], r[:500], t[:500])
    print('500 test queries', rss(), flush=True)


if __name__ == '__main__':
    main(sys.argv[1])
