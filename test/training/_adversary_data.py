r"""The small inputs the tests of the adversarial trainings (CoMAT, MAT, MMKRLAdversary) share:
a batch of triples with sampled negatives, a two-modality model and a planted graph."""
import torch

from torch_mmkg.datasets import FakeMMKGDataset
from torch_mmkg.loader import NegativeSampler

#: Entities and relations of :func:`batch` and :func:`multimodal_model`.
N, R = 20, 3


def batch(n=8, K=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    h, r, t = (torch.randint(0, N, (n, ), generator=g), torch.randint(0, R, (n, ), generator=g),
               torch.randint(0, N, (n, ), generator=g))
    return h, r, t, NegativeSampler(N, K, generator=g)(h, r, t)


def multimodal_model(cls, channels, dtype=torch.float32, **kwargs):
    r"""A seeded :obj:`cls` over image and text features, some rows of each missing."""
    torch.manual_seed(0)
    feats = {'image': torch.randn(N, 6), 'text': torch.randn(N, 5)}
    masks = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 2 == 0}
    return cls(N, R, channels, feats, masks, **kwargs).to(dtype)


def graph(num_entities=40, num_triples=300):
    return FakeMMKGDataset(num_entities=num_entities, num_relations=3, num_clusters=4,
                           num_triples=num_triples, modalities={'image': 8, 'text': 6},
                           seed=1)[0]
