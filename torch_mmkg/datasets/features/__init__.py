r"""Feature builders for the datasets of :mod:`torch_mmkg`: numeric literals, entity texts and
their sentence-encoder features, and restricted unpicklers for pickled raw files."""
from torch_mmkg.datasets.features.numeric import (
    build_numeric_features,
    db15k_numeric_rows,
    parse_numeric_value,
    read_numeric_triples,
    read_sameas_links,
)
from torch_mmkg.datasets.features.safe_pickle import load_numpy_pickle, load_plain_pickle
from torch_mmkg.datasets.features.text import (
    TextEncoder,
    db15k_texts,
    encode_entity_texts,
    kvc16k_texts,
    mkgw_texts,
    mkgy_texts,
    tiva_texts,
    wikidata_texts_from_mid,
    wn9_texts,
)
from torch_mmkg.datasets.features.visualbert import VisualBertEncoder

__all__ = [
    'load_numpy_pickle',
    'load_plain_pickle',
    'read_numeric_triples',
    'parse_numeric_value',
    'build_numeric_features',
    'read_sameas_links',
    'db15k_numeric_rows',
    'TextEncoder',
    'encode_entity_texts',
    'wikidata_texts_from_mid',
    'db15k_texts',
    'mkgw_texts',
    'mkgy_texts',
    'tiva_texts',
    'kvc16k_texts',
    'wn9_texts',
    'VisualBertEncoder',
]
