import re
import warnings

import pytest
import torch
from torch_geometric.data import HeteroData

from torch_mmkg.data import (ENTITY, REL, SPLITS, build_mmkg, feature_key, get_modalities,
                             get_triples, mask_key, modality_features, split_key, validate_mmkg)

N, R = 6, 3
TRAIN = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 2, 3], [3, 0, 4], [4, 1, 5], [0, 0, 1]])
VAL = torch.tensor([[5, 2, 0], [1, 0, 3]])
TEST = torch.tensor([[2, 1, 4]])


def text_features():
    x = torch.arange(N * 4, dtype=torch.float).view(N, 4) + 1.0
    x[2] = 0.0  # entity 2 has no text
    return x


def make(**kwargs):
    args = dict(num_entities=N, num_relations=R,
                triples={'train': TRAIN, 'val': VAL, 'test': TEST},
                features={'text': text_features()},
                entity_names=[f'e{i}' for i in range(N)],
                relation_names=[f'r{i}' for i in range(R)])
    args.update(kwargs)
    return build_mmkg(**args)


def assert_triples(got, expected):
    h, r, t = got
    assert torch.equal(torch.stack([h, r, t], dim=1), expected)


# -- good inputs ------------------------------------------------------------------------------
def test_build_round_trip():
    data = make()
    assert data[ENTITY].num_nodes == N and data.num_relations == R
    assert data[REL].edge_index.dtype == torch.long
    assert_triples(get_triples(data, 'train'), TRAIN)  # duplicates kept, order kept
    assert_triples(get_triples(data), TRAIN)
    assert_triples(get_triples(data, 'val'), VAL)
    assert_triples(get_triples(data, 'test'), TEST)
    assert_triples(get_triples(data, 'all'), torch.cat([TRAIN, VAL, TEST]))
    assert_triples(get_triples(data, ['val', 'test']), torch.cat([VAL, TEST]))
    for s in SPLITS:
        assert data[REL][split_key(s)].dtype == torch.bool
    assert int(sum(data[REL][split_key(s)].long() for s in SPLITS).max()) == 1
    assert data[ENTITY].name == [f'e{i}' for i in range(N)]
    assert data.relation_names == ['r0', 'r1', 'r2']
    assert get_modalities(data) == ['text']
    assert validate_mmkg(data) is data


def test_build_accepts_tuples_and_missing_splits():
    h, r, t = TRAIN.t()
    data = build_mmkg(N, R, {'train': (h, r, t)})
    assert_triples(get_triples(data, 'train'), TRAIN)
    assert get_triples(data, 'val')[0].numel() == 0
    assert get_triples(data, 'test')[0].numel() == 0
    assert get_modalities(data) == []


def test_masks_inferred_from_nonzero_rows():
    x = text_features()
    x[4, :] = 0.0
    x[5, :] = 0.0
    x[5, 3] = -1e-3  # one non-zero entry is enough
    data = make(features={'text': x})
    expected = torch.tensor([True, True, False, True, False, True])
    assert torch.equal(data[ENTITY][mask_key('text')], expected)
    feats = modality_features(data)
    assert list(feats) == ['text']
    assert torch.equal(feats['text'][0], x) and torch.equal(feats['text'][1], expected)


def test_explicit_mask_and_integer_features():
    x = torch.ones(N, 2, dtype=torch.long)
    mask = torch.tensor([True, False, True, False, True, False])
    data = make(features={'num': x}, masks={'num': mask})
    assert data[ENTITY][feature_key('num')].dtype == torch.float32
    assert torch.equal(data[ENTITY][mask_key('num')], mask)


def test_infer_masks_false_is_an_error():
    with pytest.raises(ValueError, match=r"No mask given for modality 'text'.*infer_masks=False"):
        make(infer_masks=False)
    mask = text_features().ne(0).any(1)
    data = make(infer_masks=False, masks={'text': mask})
    assert torch.equal(data[ENTITY].mask_text, mask)


def test_get_triples_val_clean_and_unknown_split():
    data = make()
    with pytest.raises(ValueError, match=r"Split 'val_clean' not found.*'train'"):
        get_triples(data, 'val_clean')
    data[REL].val_clean_mask = torch.zeros_like(data[REL].val_mask)
    data[REL].val_clean_mask[len(TRAIN) + 1] = True
    assert_triples(get_triples(data, 'val_clean'), VAL[1:])


# -- bad inputs to the builder ----------------------------------------------------------------
def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Unknown split names \['valid'\]"):
        make(triples={'train': TRAIN, 'valid': VAL})
    with pytest.raises(ValueError, match=r"Masks given for modalities without features: "
                                         r"\['image'\]"):
        make(masks={'image': torch.ones(N, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"triples\['train'\]: expected a \[T, 3\].*\(4, 2\)"):
        make(triples={'train': torch.zeros(4, 2, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"triples\['val'\]: triple ids must be integers"):
        make(triples={'train': TRAIN, 'val': VAL.float()})
    with pytest.raises(ValueError, match=r"triples\['test'\]: head, relation and tail must be "
                                         r"1-d tensors of equal length"):
        make(triples={'train': TRAIN, 'test': (torch.tensor([0]), torch.tensor([0, 1]),
                                               torch.tensor([1]))})
    with pytest.raises(ValueError, match=r"must be a 2-d \[num_entities, num_features\].*"
                                         r"\(6,\)"):
        make(features={'text': torch.ones(N)})


# -- ids out of range -------------------------------------------------------------------------
@pytest.mark.parametrize('row,col,value,msg', [
    (0, 3, N, r"edge_index: head entity id 6 at triple 3 is out of range \[0, 6\)"),
    (1, 7, N + 4, r"edge_index: tail entity id 10 at triple 7 is out of range \[0, 6\)"),
    (1, 2, -1, r"edge_index: tail entity id -1 at triple 2 is out of range \[0, 6\)"),
])
def test_entity_id_out_of_range(row, col, value, msg):
    data = make()
    data[REL].edge_index[row, col] = value
    with pytest.raises(ValueError, match=msg):
        validate_mmkg(data)


def test_entity_id_out_of_range_at_build():
    bad = VAL.clone()
    bad[1, 2] = N
    with pytest.raises(ValueError, match=r"tail entity id 6 at triple 7 is out of range"):
        make(triples={'train': TRAIN, 'val': bad, 'test': TEST})


@pytest.mark.parametrize('col,value', [(4, R), (8, -2)])
def test_relation_id_out_of_range(col, value):
    data = make()
    data[REL].edge_type[col] = value
    with pytest.raises(ValueError, match=rf"edge_type: relation id {value} at triple {col} "
                                         rf"is out of range \[0, 3\)"):
        validate_mmkg(data)


def test_edge_tensors_of_wrong_shape_or_dtype():
    data = make()
    data[REL].edge_index = data[REL].edge_index.int()
    with pytest.raises(ValueError, match=r"edge_index must have dtype torch.long.*int32"):
        validate_mmkg(data)
    data = make()
    data[REL].edge_index = data[REL].edge_index.t().contiguous()
    with pytest.raises(ValueError, match=r"edge_index must be a \[2, E\] tensor, got \(9, 2\)"):
        validate_mmkg(data)
    data = make()
    data[REL].edge_type = data[REL].edge_type[:-1]
    with pytest.raises(ValueError, match=r"edge_type must be a 1-d tensor of length 9"):
        validate_mmkg(data)


def test_entity_and_relation_counts():
    data = make()
    data[ENTITY].num_nodes = 0
    with pytest.raises(ValueError, match=r"num_nodes must be a positive integer, got 0"):
        validate_mmkg(data)
    data = make()
    data.num_relations = 0
    with pytest.raises(ValueError, match=r"num_relations must be a positive integer, got 0"):
        validate_mmkg(data)
    with pytest.raises(ValueError, match=r"Expected a HeteroData object, got dict"):
        validate_mmkg({})
    with pytest.raises(ValueError, match=r"no 'entity' node type"):
        validate_mmkg(HeteroData())


# -- splits -----------------------------------------------------------------------------------
def test_row_in_two_splits():
    data = make()
    data[REL].test_mask[2] = True
    with pytest.raises(ValueError, match=r"Triple 2 belongs to more than one split"):
        validate_mmkg(data)


def test_row_in_no_split():
    data = make()
    data[REL].val_mask[7] = False
    with pytest.raises(ValueError, match=r"Triple 7 belongs to no split"):
        validate_mmkg(data)


@pytest.mark.parametrize('bad', [torch.ones(9, dtype=torch.uint8), torch.ones(8, dtype=torch.bool)])
def test_split_mask_of_wrong_dtype_or_shape(bad):
    data = make()
    data[REL].train_mask = bad
    with pytest.raises(ValueError, match=r"train_mask must be a bool tensor of shape \[9\]"):
        validate_mmkg(data)


def test_missing_split_mask():
    data = make()
    del data[REL].test_mask
    with pytest.raises(ValueError, match=r"The edge store has no 'test_mask'"):
        validate_mmkg(data)


def test_val_clean_outside_val():
    data = make()
    clean = data[REL].val_mask.clone()
    data[REL].val_clean_mask = clean
    validate_mmkg(data)
    clean[8] = True  # the test triple
    with pytest.raises(ValueError, match=r"val_clean_mask marks triple 8 which is not in the "
                                         r"validation split"):
        validate_mmkg(data)
    data[REL].val_clean_mask = data[REL].val_mask.float()
    with pytest.raises(ValueError, match=r"val_clean_mask must be a bool tensor of shape \[9\]"):
        validate_mmkg(data)


# -- features and masks -----------------------------------------------------------------------
@pytest.mark.parametrize('value,text', [(float('nan'), 'nan'), (float('inf'), 'inf'),
                                        (float('-inf'), '-inf')])
def test_non_finite_features(value, text):
    x = text_features()
    x[4, 2] = value
    with pytest.raises(ValueError, match=rf"x_text holds {text} at entity 4, feature 2"):
        make(features={'text': x})


def test_non_finite_feature_on_masked_out_row_is_still_an_error():
    x = text_features()
    x[2, 1] = float('nan')
    mask = torch.tensor([True, True, False, True, True, True])
    with pytest.raises(ValueError, match=r"holds nan at entity 2, feature 1"):
        make(features={'text': x}, masks={'text': mask})


@pytest.mark.parametrize('rows', [N - 1, N + 1])
def test_feature_rows_differ_from_entity_count(rows):
    x = torch.ones(rows, 4)
    with pytest.raises(ValueError, match=rf"x_text has {rows} rows but there are 6 entities"):
        make(features={'text': x})


def test_features_not_2d_float():
    data = make()
    data[ENTITY].x_text = torch.ones(N, 2, 2)
    with pytest.raises(ValueError, match=r"x_text must be a 2-d float tensor.*\(6, 2, 2\)"):
        validate_mmkg(data)
    data[ENTITY].x_text = torch.ones(N, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"x_text must be a 2-d float tensor, got torch.int64"):
        validate_mmkg(data)


@pytest.mark.parametrize('mask,what', [
    (torch.ones(N - 1, dtype=torch.bool), r'torch.bool \(5,\)'),
    (torch.ones(N, 1, dtype=torch.bool), r'torch.bool \(6, 1\)'),
])
def test_mask_of_wrong_shape(mask, what):
    with pytest.raises(ValueError, match=rf"mask_text must be a bool tensor of shape \[6\], "
                                         rf"got {what}"):
        make(masks={'text': mask})


@pytest.mark.parametrize('dtype', [torch.uint8, torch.float, torch.long])
def test_mask_of_wrong_dtype(dtype):
    mask = text_features().ne(0).any(1).to(dtype)
    with pytest.raises(ValueError, match=rf"mask_text must be a bool tensor of shape \[6\], "
                                         rf"got {re.escape(str(dtype))}"):
        make(masks={'text': mask})


def test_mask_claims_modality_on_zero_row():
    mask = torch.ones(N, dtype=torch.bool)  # entity 2 has an all-zero row
    with pytest.raises(ValueError, match=r"mask_text marks entity 2 as having modality 'text' "
                                         r"but its feature row is all zeros"):
        make(masks={'text': mask})


def test_missing_mask_or_features_of_listed_modality():
    data = make()
    del data[ENTITY].mask_text
    with pytest.raises(ValueError, match=r"Modality 'text' has no availability mask"):
        validate_mmkg(data)
    data = make()
    data.modalities = ['text', 'image']
    with pytest.raises(ValueError, match=r"Modality 'image' is listed but .*x_image is missing"):
        validate_mmkg(data)


@pytest.mark.parametrize('name', ['Text', '1text', 'text-emb', '', 'te xt'])
def test_bad_modality_names(name):
    with pytest.raises(ValueError, match=rf"Modality name {re.escape(repr(name))} must be a "
                                         rf"lower-case identifier"):
        make(features={name: text_features()})


def test_modality_list_checks():
    data = make()
    data.modalities = ['text', 'text']
    with pytest.raises(ValueError, match=r"data.modalities has duplicates: \['text', 'text'\]"):
        validate_mmkg(data)
    data.modalities = 'text'
    with pytest.raises(ValueError, match=r"data.modalities must be a list of names, got str"):
        validate_mmkg(data)


def test_stray_modality_tensors_warn():
    data = make()
    data[ENTITY].x_image = torch.ones(N, 2)
    with pytest.warns(UserWarning, match=r"\['x_image'\] for modalities not listed"):
        validate_mmkg(data)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        validate_mmkg(make())


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize('count', [N - 1, N + 1])
def test_entity_names_of_wrong_length(count):
    with pytest.raises(ValueError, match=rf"data\['entity'\].name has {count} entries but "
                                         rf"there are 6"):
        make(entity_names=[f'e{i}' for i in range(count)])


def test_relation_names_of_wrong_length():
    with pytest.raises(ValueError, match=r"data.relation_names has 2 entries but there are 3"):
        make(relation_names=['a', 'b'])


def test_duplicate_names():
    names = ['a', 'b', 'c', 'd', 'b', 'e']
    with pytest.raises(ValueError, match=r"name: duplicate name 'b' at positions 1 and 4"):
        make(entity_names=names)
    with pytest.raises(ValueError, match=r"relation_names: duplicate name 'x' at positions "
                                         r"0 and 2"):
        make(relation_names=['x', 'y', 'x'])


def test_names_must_be_strings():
    with pytest.raises(ValueError, match=r"relation_names\[1\] is not a string: 7"):
        make(relation_names=['x', 7, 'z'])
    data = make()
    data.relation_names = 'xyz'
    with pytest.raises(ValueError, match=r"relation_names must be a list of strings, got str"):
        validate_mmkg(data)
