import json
import os
import os.path as osp
import re
import warnings

import numpy as np
import pytest
import torch

from torch_mmkg.data import ENTITY, REL, get_triples, split_report
from torch_mmkg.datasets.folder import MMKGFolder

TRAIN = ('paris\tcapital of\tfrance\n'
         'berlin\tcapital of\tgermany\n'
         'new york city\tlocated in\tusa\n'
         '\n'
         'paris\tlocated in\tfrance\n'
         'berlin\tlocated in\tgermany\n')
VALID = 'new york city\tcapital of\tusa\n'
TEST = 'france\tlocated in\tgermany\n'
# Ids in order of first appearance in train, valid, test.
ENTITIES = ['paris', 'france', 'berlin', 'germany', 'new york city', 'usa']
RELATIONS = ['capital of', 'located in']
TRAIN_IDS = [[0, 0, 1], [2, 0, 3], [4, 1, 5], [0, 1, 1], [2, 1, 3]]
VALID_IDS = [[4, 0, 5]]
TEST_IDS = [[1, 1, 3]]
N = len(ENTITIES)

TEXT = torch.arange(N * 3, dtype=torch.float).view(N, 3) + 1
TEXT[3] = 0  # germany has no text
NUMERIC = np.random.RandomState(0).rand(N, 2).astype(np.float64) + 0.5
NUMERIC_MASK = np.array([True, False, True, False, False, True])
IMAGE = torch.tensor([[1., 2., 3., 4.], [5., 6., 7., 8.], [9., 10., 11., 12.]])
IMAGE_INDEX = 'usa\nparis\n\nberlin\n'  # rows 0, 1, 2 belong to entities 5, 0, 2


def write(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    return path


def make_labelled(root, raw=True, features=True, val_name='valid.txt'):
    raw_dir = osp.join(root, 'raw') if raw else root
    write(osp.join(raw_dir, 'train.txt'), TRAIN)
    write(osp.join(raw_dir, val_name), VALID)
    write(osp.join(raw_dir, 'test.txt'), TEST)
    if features:
        fdir = osp.join(raw_dir, 'features')
        os.makedirs(fdir, exist_ok=True)
        torch.save(TEXT, osp.join(fdir, 'text.pt'))
        np.save(osp.join(fdir, 'numeric.npy'), NUMERIC)
        np.save(osp.join(fdir, 'numeric_mask.npy'), NUMERIC_MASK)
        torch.save(IMAGE, osp.join(fdir, 'image.pth'))
        write(osp.join(fdir, 'image_index.txt'), IMAGE_INDEX)
    return raw_dir


def make_openke(root, raw=True):
    raw_dir = osp.join(root, 'raw') if raw else root
    write(osp.join(raw_dir, 'entity2id.txt'),
          '4\nfreon\t0\norganic compound\t1\nwor lass 2\n<http://x.org/D> 3\n')
    write(osp.join(raw_dir, 'relation2id.txt'), '2\nis a 0\npart of\t1\n')
    # 'head tail relation'
    write(osp.join(raw_dir, 'train2id.txt'), '4\n0 1 0\n2 1 0\n3 2 1\n0 3 1\n')
    write(osp.join(raw_dir, 'valid2id.txt'), '1\n2 3 1\n')
    write(osp.join(raw_dir, 'test2id.txt'), '1\n3 0 0\n')
    return raw_dir


def load(root, **kwargs):
    r"""Loads a folder whose split is clean: no warning may be raised."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        return MMKGFolder(root, **kwargs)


def triples(data, split):
    h, r, t = get_triples(data, split)
    return torch.stack([h, r, t], dim=1).tolist()


def error(path, line=None):
    return re.escape(path if line is None else f'{path}:{line}') + ': '


# -- reading ----------------------------------------------------------------------------------
def test_labelled_with_features(tmp_path):
    root = str(tmp_path)
    make_labelled(root)
    ds = load(root)
    assert ds.format == 'labelled'
    assert len(ds) == 1
    data = ds[0]
    assert data[ENTITY].name == ENTITIES
    assert data.relation_names == RELATIONS
    assert ds.num_entities == N and ds.num_relations == 2
    assert triples(data, 'train') == TRAIN_IDS
    assert triples(data, 'val') == VALID_IDS
    assert triples(data, 'test') == TEST_IDS
    assert triples(data, 'val_clean') == VALID_IDS
    assert ds.modalities == data.modalities == ['image', 'numeric', 'text']
    ent = data[ENTITY]
    # Aligned rows; mask inferred from the non-zero rows.
    assert torch.equal(ent.x_text, TEXT)
    assert ent.mask_text.tolist() == [True, True, True, False, True, True]
    # Explicit mask; float64 stored as float32; masked-out rows kept as given.
    assert ent.x_numeric.dtype == torch.float32
    assert torch.equal(ent.x_numeric, torch.from_numpy(NUMERIC).float())
    assert ent.mask_numeric.tolist() == NUMERIC_MASK.tolist()
    # Rows keyed by name: entities absent from the index get zero rows and mask False.
    expected = torch.zeros(N, 4)
    expected[5], expected[0], expected[2] = IMAGE[0], IMAGE[1], IMAGE[2]
    assert torch.equal(ent.x_image, expected)
    assert ent.mask_image.tolist() == [True, False, True, False, False, True]
    assert repr(ds) == ('MMKGFolder(entities=6, relations=2, train/val/test=5/1/1, '
                        'modalities=[image(4d, 3/6), numeric(2d, 3/6), text(3d, 5/6)])')
    assert ds.split_report == split_report(data)
    assert ds.split_report['val_clean'] == 1


def test_labelled_files_in_root_and_val_txt(tmp_path):
    root = str(tmp_path)
    make_labelled(root, raw=False, features=False, val_name='val.txt')
    ds = load(root)
    assert ds.raw_dir == root
    assert triples(ds[0], 'val') == VALID_IDS
    assert ds.modalities == []
    assert osp.isdir(osp.join(root, 'processed'))
    assert repr(ds) == 'MMKGFolder(entities=6, relations=2, train/val/test=5/1/1, modalities=[])'


def test_labelled_with_vocabulary_files(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    ents = ['usa', 'germany', 'unused', 'paris', 'france', 'berlin', 'new york city']
    write(osp.join(raw, 'entities.txt'), '\n'.join(ents) + '\n')
    write(osp.join(raw, 'relations.txt'), 'located in\ncapital of\n')
    ds = MMKGFolder(root)  # 'unused' is absent from training: a warning, checked below
    data = ds[0]
    assert data[ENTITY].name == ents
    assert data.relation_names == ['located in', 'capital of']
    eid = {n: i for i, n in enumerate(ents)}
    rid = {'located in': 0, 'capital of': 1}
    expected = [[eid[h], rid[r], eid[t]] for h, r, t in
                (line.split('\t') for line in TRAIN.splitlines() if line)]
    assert triples(data, 'train') == expected
    assert ds.split_report['entities_absent_from_train'] == 1


def test_labelled_vocabulary_unknown_name(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    write(osp.join(raw, 'entities.txt'), '\n'.join(ENTITIES[:-1]) + '\n')  # no 'usa'
    with pytest.raises(ValueError, match=error(osp.join(raw, 'train.txt'), 3) +
                       r"unknown entity 'usa'"):
        MMKGFolder(root)
    write(osp.join(raw, 'entities.txt'), 'paris\nfrance\nparis\n')
    with pytest.raises(ValueError, match=error(osp.join(raw, 'entities.txt'), 3) +
                       r"duplicate name 'paris' \(already on line 1\)"):
        MMKGFolder(root)


def test_openke_in_root(tmp_path):
    root = str(tmp_path)
    make_openke(root, raw=False)
    fdir = osp.join(root, 'features')
    os.makedirs(fdir)
    x = torch.tensor([[1., 0.], [0., 0.], [2., 3.], [0., 4.]])
    torch.save(x, osp.join(fdir, 'text.pt'))
    ds = load(root)
    assert ds.format == 'openke'
    data = ds[0]
    assert data[ENTITY].name == ['freon', 'organic compound', 'wor lass', '<http://x.org/D>']
    assert data.relation_names == ['is a', 'part of']
    assert triples(data, 'train') == [[0, 0, 1], [2, 0, 1], [3, 1, 2], [0, 1, 3]]
    assert triples(data, 'val') == [[2, 1, 3]]
    assert triples(data, 'test') == [[3, 0, 0]]
    assert torch.equal(data[ENTITY].x_text, x)
    assert data[ENTITY].mask_text.tolist() == [True, False, True, True]


def test_format_argument_and_detection(tmp_path):
    root = str(tmp_path)
    os.makedirs(osp.join(root, 'raw'))
    with pytest.raises(ValueError, match=r"no knowledge graph found; looked for OpenKE: "
                                         r"entity2id.txt.*labelled: train.txt, valid.txt"):
        MMKGFolder(root)
    with pytest.raises(ValueError, match=r"format must be one of"):
        MMKGFolder(root, format='csv')
    with pytest.raises(ValueError, match=r"no such folder"):
        MMKGFolder(osp.join(root, 'missing'))
    raw = make_labelled(root, features=False)
    with pytest.raises(ValueError, match=r"the openke layout needs entity2id.txt, "
                                         r"relation2id.txt, train2id.txt, valid2id.txt, "
                                         r"test2id.txt, which are missing"):
        MMKGFolder(root, format='openke')
    os.remove(osp.join(raw, 'valid.txt'))
    with pytest.raises(ValueError, match=r"the labelled layout needs valid.txt \(or val.txt\), "
                                         r"which is missing"):
        MMKGFolder(root)
    write(osp.join(raw, 'valid.txt'), VALID)
    write(osp.join(raw, 'val.txt'), VALID)
    with pytest.raises(ValueError, match=r"both valid.txt and val.txt exist"):
        MMKGFolder(root)
    # OpenKE wins in 'auto' when train2id.txt exists next to labelled files.
    os.remove(osp.join(raw, 'val.txt'))
    make_openke(root)
    assert load(root).format == 'openke'
    assert load(root, format='labelled').format == 'labelled'


# -- overrides --------------------------------------------------------------------------------
def test_feature_and_mask_arguments(tmp_path):
    root = str(tmp_path)
    make_labelled(root)
    audio = torch.zeros(N, 2)
    audio[1] = 1.0
    text_mask = torch.tensor([1, 0, 1, 0, 1, 0], dtype=torch.uint8)
    other = osp.join(root, 'other_text.npy')
    new_text = np.full((N, 2), 7.0, dtype=np.float32)
    np.save(other, new_text)
    ds = load(root, features={'audio': audio, 'text': other}, masks={'text': text_mask})
    ent = ds[0][ENTITY]
    assert ds.modalities == ['audio', 'image', 'numeric', 'text']
    assert torch.equal(ent.x_audio, audio)
    assert ent.mask_audio.tolist() == [False, True, False, False, False, False]
    assert torch.equal(ent.x_text, torch.from_numpy(new_text))
    assert ent.mask_text.tolist() == [True, False, True, False, True, False]


def test_mask_argument_for_unknown_modality(tmp_path):
    root = str(tmp_path)
    make_labelled(root)
    with pytest.raises(ValueError, match=r"masks\['video'\]: a mask of modality 'video', which "
                                         r"has no features"):
        MMKGFolder(root, masks={'video': torch.ones(N, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"features must be a dict"):
        MMKGFolder(root, features=[TEXT])


# -- errors -----------------------------------------------------------------------------------
def test_malformed_lines(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    write(osp.join(raw, 'test.txt'), TEST + 'france located in germany\n')
    with pytest.raises(ValueError, match=error(osp.join(raw, 'test.txt'), 2) +
                       r"expected 3 fields"):
        MMKGFolder(root)
    root2 = str(tmp_path / 'openke')
    raw2 = make_openke(root2)
    write(osp.join(raw2, 'train2id.txt'), '2\n0 1 0\n2 1\n')
    with pytest.raises(ValueError, match=error(osp.join(raw2, 'train2id.txt'), 3) +
                       r"expected 3 integer fields"):
        MMKGFolder(root2)
    write(osp.join(raw2, 'train2id.txt'), '1\n0 1 0\n2 1 0\n')
    with pytest.raises(ValueError, match=error(osp.join(raw2, 'train2id.txt')) +
                       r"the header says 1 rows but the file has 2"):
        MMKGFolder(root2)


def test_mask_or_index_without_features(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    fdir = osp.join(raw, 'features')
    path = osp.join(fdir, 'video_mask.pt')
    os.makedirs(fdir)
    torch.save(torch.ones(N, dtype=torch.bool), path)
    with pytest.raises(ValueError, match=error(path) + r"a mask of modality 'video', which has "
                                                       r"no features"):
        MMKGFolder(root)
    os.remove(path)
    path = write(osp.join(fdir, 'video_index.txt'), 'paris\n')
    with pytest.raises(ValueError, match=error(path) + r"a row index of modality 'video'"):
        MMKGFolder(root)


@pytest.mark.parametrize('rows', [N - 1, N + 2])
def test_feature_rows_differ_from_entities(tmp_path, rows):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    path = osp.join(raw, 'features', 'text.pt')
    os.makedirs(osp.dirname(path))
    torch.save(torch.ones(rows, 3), path)
    with pytest.raises(ValueError, match=error(path) + rf"{rows} feature rows but the graph has "
                                                       rf"6 entities.*text_index.txt"):
        MMKGFolder(root)


def test_nan_feature(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    path = osp.join(raw, 'features', 'text.npy')
    os.makedirs(osp.dirname(path))
    x = np.ones((N, 3), dtype=np.float32)
    x[4, 1] = np.nan
    np.save(path, x)
    with pytest.raises(ValueError, match=error(path) + r"row 4, feature 1 holds nan"):
        MMKGFolder(root)


def test_index_errors(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root)
    index = osp.join(raw, 'features', 'image_index.txt')
    write(index, 'usa\nrome\nberlin\n')
    with pytest.raises(ValueError, match=error(index, 2) + r"entity 'rome' is not in the graph"):
        MMKGFolder(root)
    write(index, 'usa\nparis\n')
    with pytest.raises(ValueError, match=error(index) + r"lists 2 entities but .*image.pth has "
                                                        r"3 rows"):
        MMKGFolder(root)
    write(index, 'usa\nparis\nusa\n')
    with pytest.raises(ValueError, match=error(index, 3) + r"duplicate name 'usa'"):
        MMKGFolder(root)


def test_bad_masks(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root)
    path = osp.join(raw, 'features', 'numeric_mask.npy')
    np.save(path, NUMERIC_MASK.astype(np.float32))
    with pytest.raises(ValueError, match=error(path) + r"the mask of modality 'numeric' must be "
                       r"boolean \(or integers 0/1\), got torch.float32"):
        MMKGFolder(root)
    np.save(path, np.array([0, 2, 1, 0, 0, 1]))
    with pytest.raises(ValueError, match=r"must be boolean \(or integers 0/1\), got torch.int64"):
        MMKGFolder(root)
    np.save(path, NUMERIC_MASK[:-1])
    with pytest.raises(ValueError, match=error(path) + r"the mask of modality 'numeric' must "
                       r"have shape \[6\].*got \(5,\)"):
        MMKGFolder(root)
    # A mask claiming text on germany's all-zero row is caught by the validator.
    torch.save(torch.ones(N, dtype=torch.bool), osp.join(raw, 'features', 'text_mask.pt'))
    np.save(path, NUMERIC_MASK)
    with pytest.raises(ValueError, match=r"mask_text marks entity 3 as having modality 'text' "
                                         r"but its feature row is all zeros"):
        MMKGFolder(root)


def test_bad_modality_file_names(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    path = osp.join(raw, 'features', 'Text.pt')
    os.makedirs(osp.dirname(path))
    torch.save(TEXT, path)
    with pytest.raises(ValueError, match=error(path) + r"modality name 'Text' must be a "
                                                       r"lower-case identifier"):
        MMKGFolder(root)


def test_pickled_feature_file_is_refused(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    path = osp.join(raw, 'features', 'text.pt')
    os.makedirs(osp.dirname(path))
    torch.save({'x': TEXT}, path)
    with pytest.raises(ValueError, match=error(path) + r"expected a tensor, found dict"):
        MMKGFolder(root)


# -- caching ----------------------------------------------------------------------------------
def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    root = str(tmp_path)
    raw = make_labelled(root)
    calls = []
    process = MMKGFolder.process

    def counting_process(self):
        calls.append(self.processed_paths[0])
        process(self)

    monkeypatch.setattr(MMKGFolder, 'process', counting_process)
    first = load(root)
    assert len(calls) == 1
    second = load(root)
    assert len(calls) == 1  # not reprocessed
    assert second.processed_paths == first.processed_paths
    assert torch.equal(second[0][ENTITY].x_text, TEXT)

    # A new feature file changes the cache name and triggers processing.
    torch.save(torch.ones(N, 2), osp.join(raw, 'features', 'audio.pt'))
    third = load(root)
    assert len(calls) == 2
    assert third.processed_paths != first.processed_paths
    assert 'audio' in third.modalities
    load(root)
    assert len(calls) == 2

    # A changed file (size and mtime) triggers processing too.
    torch.save(torch.ones(N, 5), osp.join(raw, 'features', 'audio.pt'))
    assert load(root)[0][ENTITY].x_audio.shape == (N, 5)
    assert len(calls) == 3

    # So does a changed features= tensor, but not the same tensor again.
    load(root, features={'video': torch.ones(N, 1)})
    load(root, features={'video': torch.ones(N, 1)})
    assert len(calls) == 4
    load(root, features={'video': torch.full((N, 1), 2.0)})
    assert len(calls) == 5

    load(root, force_reload=True)
    assert len(calls) == 6


def test_split_report_and_warning_on_every_load(tmp_path):
    root = str(tmp_path)
    raw = make_labelled(root, features=False)
    write(osp.join(raw, 'valid.txt'), VALID + TRAIN.splitlines()[0] + '\n' + VALID)
    with pytest.warns(UserWarning, match=r"the published split is not clean: val: 3 rows but 2 "
                                         r"distinct.*'val_clean' \(1 triples"):
        ds = MMKGFolder(root)
    assert ds.split_report['rows']['val'] == 3
    assert ds.split_report['overlap']['val&train'] == 1
    assert triples(ds[0], 'val_clean') == VALID_IDS
    report_files = [f for f in os.listdir(osp.join(root, 'processed'))
                    if f.endswith('_split_report.json')]
    assert len(report_files) == 1
    with open(osp.join(root, 'processed', report_files[0])) as f:
        assert json.load(f) == ds.split_report
    # The cached load warns too; without the saved report it is computed on load.
    os.remove(osp.join(root, 'processed', report_files[0]))
    with pytest.warns(UserWarning, match=r"the published split is not clean"):
        again = MMKGFolder(root)
    assert again.split_report == ds.split_report


def test_cache_is_written_last_and_whole(tmp_path, monkeypatch):
    # Another process (a second rank, a second job on the same folder) loads the folder as soon
    # as the cache exists: by then the split report and the feature record must be whole files.
    root = str(tmp_path)
    make_labelled(root)
    seen = []
    save = MMKGFolder.save.__func__

    def spy(cls, data_list, path):
        processed = osp.dirname(path)
        names = sorted(os.listdir(processed))
        seen.append(names)
        for name in names:
            if name.endswith('.json'):  # readable, not torn
                with open(osp.join(processed, name)) as f:
                    json.load(f)
        save(cls, data_list, path)

    monkeypatch.setattr(MMKGFolder, 'save', classmethod(spy))
    ds = load(root, mmap=True)
    assert len(seen) == 1
    stem = osp.splitext(osp.basename(ds.processed_paths[0]))[0]
    assert seen[0] == sorted([f'{stem}_split_report.json', f'{stem}_features.json',
                              f'features_{ds._fingerprint}'])


def test_transforms(tmp_path):
    root = str(tmp_path)
    make_labelled(root)

    def pre_transform(data):
        data.tag = 'pre'
        return data

    def transform(data):
        data[ENTITY].x_text = data[ENTITY].x_text * 2
        return data

    ds = load(root, pre_transform=pre_transform, transform=transform)
    data = ds[0]
    assert data.tag == 'pre'
    assert torch.equal(data[ENTITY].x_text, TEXT * 2)
    assert torch.equal(ds[0][ENTITY].x_text, TEXT * 2)  # applied to a fresh copy each time
    assert data[REL].val_clean_mask.sum() == 1
