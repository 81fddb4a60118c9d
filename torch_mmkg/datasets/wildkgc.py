r"""The WildKGC benchmark of NATIVE (MKG-W, MKG-Y, DB15K, KVC16K, TIVA)."""
from typing import List, Optional

from torch_mmkg.data import read_openke_dict, read_openke_triples
from torch_mmkg.datasets.base import Features, MMKGDataset
from torch_mmkg.datasets.download import RawFile

NATIVE_COMMIT = 'c72291c3d571b36c754897935d21718aa4568fe7'
LITERAL_KGS_COMMIT = '04163da895e772d8e9b42951fa9be998e0c13d95'
MMKB_COMMIT = 'dc1c89cac110ddbb9944d6ed5ab2b3c2339d320c'
IMF_COMMIT = 'df883e4a60f9e32b22888a0d15719fcf0cb03250'
LWD_COMMIT = '2159e0db86bb8913cb6750b9f80375a22e0da498'

ENTITY2WIKIDATA = RawFile('HestiaSky', 'IMF-Pytorch', IMF_COMMIT,
                          'dataset/FB15K/entity2wikidata.json')


class WildKGC(MMKGDataset):
    r"""Base class of the WildKGC datasets from the `"NATIVE: Multi-modal Knowledge Graph
    Completion in the Wild" <https://arxiv.org/abs/2406.17605>`_ paper (SIGIR 2024).

    The structure (OpenKE files of `zjukg/NATIVE <https://github.com/zjukg/NATIVE>`_, whose triple
    files are ordered ``head tail relation``) is read exactly as published. The authors' image,
    text, numeric, audio and video features are only released on a cloud drive: put them into
    :obj:`root` (e.g. ``DB15K-visual.pth``) and they are loaded (with :obj:`weights_only=True`);
    otherwise every modality the public raw files allow is built (see each subclass). See
    :class:`~torch_mmkg.datasets.base.MMKGDataset` for the arguments.
    """
    #: The benchmark's folder name in zjukg/NATIVE.
    folder: str = ''

    @property
    def author_name(self) -> str:
        return self.folder

    def raw_files(self) -> List[RawFile]:
        return [
            RawFile('zjukg', 'NATIVE', NATIVE_COMMIT, f'benchmarks/{self.folder}/{name}')
            for name in ('entity2id.txt', 'relation2id.txt', 'train2id.txt', 'valid2id.txt',
                         'test2id.txt')
        ] + self.feature_raw_files()

    def feature_raw_files(self) -> List[RawFile]:
        return []

    def read_structure(self) -> dict:
        entities = read_openke_dict(self.raw('entity2id.txt'))
        relations = read_openke_dict(self.raw('relation2id.txt'))
        N, R = len(entities), len(relations)
        triples = {
            split: read_openke_triples(self.raw(f'{fname}2id.txt'), N, R, order='htr')
            for split, fname in (('train', 'train'), ('val', 'valid'), ('test', 'test'))
        }
        return dict(num_entities=N, num_relations=R, triples=triples, entity_names=entities,
                    relation_names=relations)


class MKGW(WildKGC):
    r"""The MKG-W dataset (Wikidata; 15,000 entities, 169 relations, 34,196/4,276/4,274
    triples) from the `"NATIVE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper.

    Built modality: **text**, the English Wikidata label and description of the entities that
    public files cover (`LiterallyWikidata <https://github.com/GenetAsefa/LiterallyWikidata>`_,
    with IMF's Freebase–Wikidata file as fallback): about 28% of the entities, a real
    missing-modality pattern; the others are masked. The authors' image (383-d) and text (384-d)
    features are loaded from ``MKG-W-visual.pth``/``MKG-W-textual.pth`` when present.
    """
    folder = 'MKG-W'
    author_modalities = ('image', 'text')

    def feature_raw_files(self) -> List[RawFile]:
        base = 'Datasets/Entities'
        return [
            RawFile('GenetAsefa', 'LiterallyWikidata', LWD_COMMIT,
                    f'{base}/entity_labels_en.txt'),
            RawFile('GenetAsefa', 'LiterallyWikidata', LWD_COMMIT,
                    f'{base}/entity_wikidata_descriptions_en.txt'),
            ENTITY2WIKIDATA,
        ]

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        from torch_mmkg.datasets.features.text import mkgw_texts
        return mkgw_texts(structure['entity_names'], self.raw('entity_labels_en.txt'),
                          self.raw('entity_wikidata_descriptions_en.txt'),
                          self.raw('entity2wikidata.json'))


class MKGY(WildKGC):
    r"""The MKG-Y dataset (YAGO; 15,000 entities, 28 relations, 21,310/2,665/2,663 triples)
    from the `"NATIVE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper.

    Built modality: **text**, the readable YAGO title of every entity. The authors' image
    (383-d) and text (384-d) features are loaded from ``MKG-Y-visual.pth``/``MKG-Y-textual.pth``
    when present.
    """
    folder = 'MKG-Y'
    author_modalities = ('image', 'text')

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        from torch_mmkg.datasets.features.text import mkgy_texts
        return mkgy_texts(structure['entity_names'])


class DB15K(WildKGC):
    r"""The DB15K dataset (DBpedia; 12,842 entities, 279 relations, 79,222/9,904/9,902
    triples) from the `"NATIVE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper, originally from `"MMKG: Multi-Modal Knowledge
    Graphs" <https://arxiv.org/abs/1903.05485>`_.

    Built modalities:

    * **numeric**: the 48,105 DBpedia numeric literals of 10,985 entities (225 attributes;
      dates as fractional years; several values of one attribute averaged; each attribute
      normalised on the entities that have it; one presence column per attribute), so that
      1,857 entities without attributes are masked rather than zero-filled. With
      :obj:`numeric_freebase=True` the Freebase numeric triples of FB15K are added through the
      DB15K–Freebase sameAs links.
    * **text**: English Wikidata label and description, reached through the sameAs links.

    The published validation split is not clean (9,904 rows, 7,481 distinct, 6,584 also in
    training); use the split :obj:`'val_clean'` for model selection.

    Args:
        root (str): Root directory.
        numeric_freebase (bool, optional): Add the Freebase numeric triples.
            (default: :obj:`False`)
        **kwargs: See :class:`~torch_mmkg.datasets.base.MMKGDataset`.
    """
    folder = 'DB15K'
    author_modalities = ('image', 'text', 'numeric')

    def __init__(self, root: str, numeric_freebase: bool = False, **kwargs):
        self.numeric_freebase = numeric_freebase
        super().__init__(root, **kwargs)

    def feature_tag(self) -> str:
        return 'fb' if self.numeric_freebase else ''

    def feature_raw_files(self) -> List[RawFile]:
        files = [
            RawFile('sapkotaruz11', 'Literal_KGs', LITERAL_KGS_COMMIT,
                    'DB15K/DB15K_NumericalTriples_filtered.txt'),
            RawFile('mniepert', 'mmkb', MMKB_COMMIT, 'DB15K/DB15K_SameAsLink.txt'),
            ENTITY2WIKIDATA,
        ]
        if self.numeric_freebase:
            files.append(RawFile('mniepert', 'mmkb', MMKB_COMMIT,
                                 'FB15K/FB15K_NumericalTriples.txt'))
        return files

    def build_features(self, structure: dict) -> Features:
        from torch_mmkg.datasets.features.numeric import (build_numeric_features,
                                                          db15k_numeric_rows)
        rows = db15k_numeric_rows(
            self.raw('DB15K_NumericalTriples_filtered.txt'),
            sameas_path=self.raw('DB15K_SameAsLink.txt') if self.numeric_freebase else None,
            freebase_path=self.raw('FB15K_NumericalTriples.txt')
            if self.numeric_freebase else None)
        names = structure['entity_names']
        x, mask, self.numeric_attributes = build_numeric_features(
            rows, {n: i for i, n in enumerate(names)}, len(names))
        return {'numeric': (x, mask)}

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        from torch_mmkg.datasets.features.text import db15k_texts
        return db15k_texts(structure['entity_names'], self.raw('DB15K_SameAsLink.txt'),
                           self.raw('entity2wikidata.json'))


class KVC16K(WildKGC):
    r"""The KVC16K dataset (Kuaishou short videos; 16,015 entities, 4 relations,
    180,190/22,523/22,525 triples; its files are named Kuai16K) from the `"NATIVE: Multi-modal
    Knowledge Graph Completion in the Wild" <https://arxiv.org/abs/2406.17605>`_ paper.

    The entity names are Chinese. No multilingual encoder can be obtained offline here, and the
    English all-MiniLM-L6-v2 encoder would map them to near-meaningless ``[UNK]`` vectors, so
    **the text modality is absent by default**; pass
    :obj:`text_encoder="<path to a multilingual sentence-transformers model>"` to build it from
    the names. The authors' image, text, audio and video features (768-d each) are loaded from
    ``Kuai16K-visual.pth`` etc. when present.
    """
    folder = 'Kuai16K'
    author_modalities = ('image', 'text', 'audio', 'video')
    text_needs_explicit_encoder = True

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        from torch_mmkg.datasets.features.text import kvc16k_texts
        return kvc16k_texts(structure['entity_names'])


class TIVA(WildKGC):
    r"""The TIVA dataset (11,858 entities, 16 relations, 20,071/2,000/2,000 triples) from the
    `"NATIVE: Multi-modal Knowledge Graph Completion in the Wild"
    <https://arxiv.org/abs/2406.17605>`_ paper, originally from `"Tiva-KG: A Multimodal Knowledge
    Graph with Text, Image, Video and Audio" <https://doi.org/10.1145/3581783.3612266>`_.

    Built modality: **text**, the English entity names. The authors' image (2048-d), text
    (300-d), audio (128-d) and video (2048-d) features are loaded from ``TIVA-visual.pth`` etc.
    when present. The published split is far from clean (duplicate rows, and most test triples
    also occur in training): read :attr:`split_report`.
    """
    folder = 'TIVA'
    author_modalities = ('image', 'text', 'audio', 'video')

    def entity_texts(self, structure: dict) -> Optional[List[Optional[str]]]:
        from torch_mmkg.datasets.features.text import tiva_texts
        return tiva_texts(structure['entity_names'])
