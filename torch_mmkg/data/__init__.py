r"""The multi-modal KG data model: layout, builders, readers, validator, known-triple index."""
from .mmkg import (ENTITY, REL, SPLITS, feature_key, mask_key, split_key, build_mmkg,
                   get_triples, get_modalities, modality_features, validate_mmkg)
from .known_triples import KnownTriples
from .feature_store import (DiskFeatures, DiskFeatureStore, FeaturesTooLargeError,
                            write_features, open_features, load_features)
from .statistics import relation_cardinality
from .io import (read_openke_dict, read_openke_triples, read_labelled_triples, collect_names,
                 load_tensor_file)
from .split import (split_report, split_issues, clean_val_mask, add_clean_val_split,
                    warn_split_issues)

__all__ = [
    'ENTITY',
    'REL',
    'SPLITS',
    'feature_key',
    'mask_key',
    'split_key',
    'build_mmkg',
    'get_triples',
    'get_modalities',
    'modality_features',
    'validate_mmkg',
    'KnownTriples',
    'relation_cardinality',
    'read_openke_dict',
    'read_openke_triples',
    'read_labelled_triples',
    'collect_names',
    'load_tensor_file',
    'split_report',
    'split_issues',
    'clean_val_mask',
    'add_clean_val_split',
    'warn_split_issues',
    'DiskFeatures',
    'DiskFeatureStore',
    'FeaturesTooLargeError',
    'write_features',
    'open_features',
    'load_features',
]
