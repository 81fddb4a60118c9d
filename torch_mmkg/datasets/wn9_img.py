from typing import List, Optional

import torch

from torch_mmkg.data import read_labelled_triples, read_openke_dict
from torch_mmkg.datasets.base import Features, MMKGDataset
from torch_mmkg.datasets.download import RawFile

TRANSAE_COMMIT = 'ff28b0426910ab0c2b67e9eb24a8626106bd7327'


class WN9IMG(MMKGDataset):
    r"""The WN9-IMG dataset (WordNet; 6,555 entities, 9 relations, 11,741/1,337/1,319 triples)
    from the `"Image-embodied Knowledge Representation Learning"
    <https://arxiv.org/abs/1609.07028>`_ paper (IKRL), the benchmark of VBKGC, as redistributed
    with `TransAE <https://github.com/ksolaiman/TransAE>`_.

    Built modalities:

    * **gloss**: the 100-d doc2vec embeddings of the WordNet glosses released with TransAE
      (``textembed_6555_100_2_40.pkl``), read through a restricted unpickler that admits only
      numpy array reconstruction;
    * **text**: the lemmas and gloss of each synset, encoded by the sentence encoder (see
      :obj:`text_encoder`).

    Images are ImageNet ids only and cannot be obtained offline.

    Args:
        root (str): Root directory.
        **kwargs: See :class:`~torch_mmkg.datasets.base.MMKGDataset`.
    """
    def raw_files(self) -> List[RawFile]:
        names = ['train.txt', 'valid.txt', 'test.txt', 'entity2id.txt', 'relation2id.txt',
                 'entity2description.pkl', 'words.txt']
        return [RawFile('ksolaiman', 'TransAE', TRANSAE_COMMIT, f'WN9-IMG_IKRL/{n}')
                for n in names] + [
            RawFile('ksolaiman', 'TransAE', TRANSAE_COMMIT,
                    'embedding_weights/textembed_6555_100_2_40.pkl')]

    def read_structure(self) -> dict:
        entities = read_openke_dict(self.raw('entity2id.txt'), header=False)
        relations = read_openke_dict(self.raw('relation2id.txt'), header=False)
        ent_index = {n: i for i, n in enumerate(entities)}
        rel_index = {n: i for i, n in enumerate(relations)}
        triples = {
            split: read_labelled_triples(self.raw(f'{fname}.txt'), ent_index, rel_index,
                                         order='htr')
            for split, fname in (('train', 'train'), ('val', 'valid'), ('test', 'test'))
        }
        return dict(num_entities=len(entities), num_relations=len(relations),
                    triples=triples, entity_names=entities, relation_names=relations)

    def build_features(self, structure: dict) -> Features:
        from torch_mmkg.datasets.features.safe_pickle import load_numpy_pickle
        path = self.raw('textembed_6555_100_2_40.pkl')
        vectors = load_numpy_pickle(path)
        N = structure['num_entities']
        if len(vectors) != N:
            raise ValueError(f"{path}: holds {len(vectors)} vectors but there are {N} "
                             f"entities")
        x = torch.stack([torch.as_tensor(v, dtype=torch.float32).view(-1) for v in vectors])
        return {'gloss': (x, (x != 0).any(dim=1))}

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        from torch_mmkg.datasets.features.text import wn9_texts
        return wn9_texts(structure['entity_names'], self.raw('entity2description.pkl'),
                         self.raw('words.txt'))
