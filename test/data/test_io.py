import os
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch

from torch_mmkg.data import (collect_names, load_tensor_file, read_labelled_triples,
                             read_openke_dict, read_openke_triples)
from torch_mmkg.data.io import find_file, list_feature_files


def write(folder, name, text, encoding='utf-8'):
    path = osp.join(str(folder), name)
    with open(path, 'w', encoding=encoding, newline='') as f:
        f.write(text)
    return path


def err(path, line=None):
    r"""A regex prefix for an error at :obj:`path` (and :obj:`line`)."""
    return re.escape(path if line is None else f'{path}:{line}') + ': '


# -- OpenKE dictionaries ----------------------------------------------------------------------
def test_read_openke_dict(tmp_path):
    path = write(tmp_path, 'entity2id.txt', '3\nb 1\na 0\n<http://x.org/C> 2\n')
    assert read_openke_dict(path) == ['a', 'b', '<http://x.org/C>']


def test_read_openke_dict_names_with_spaces_and_tabs(tmp_path):
    # TIVA-style rows: 'organic compound\t1'; the id is the last field.
    path = write(tmp_path, 'entity2id.txt',
                 '4\nfreon\t0\norganic compound\t1\r\n  wor lass \t 3\nx  y z 2\n')
    assert read_openke_dict(path) == ['freon', 'organic compound', 'x  y z', 'wor lass']


def test_read_openke_dict_without_header_and_blank_lines(tmp_path):
    path = write(tmp_path, 'relation2id.txt', 'r1 1\n\nr0 0\n\n')
    assert read_openke_dict(path, header=False) == ['r0', 'r1']
    path = write(tmp_path, 'e.txt', '2\n\nr1 1\n   \nr0 0\n')
    assert read_openke_dict(path) == ['r0', 'r1']


def test_read_openke_dict_names_with_unicode_line_separators(tmp_path):
    # U+2028, U+0085 and form feed are not line ends in an OpenKE file.
    names = ['a\u2028b', 'c\x85d', 'e\x0cf']
    path = write(tmp_path, 'entity2id.txt',
                 '3\n' + ''.join(f'{n} {i}\n' for i, n in enumerate(names)))
    assert read_openke_dict(path) == names


def test_read_openke_dict_skips_byte_order_mark(tmp_path):
    path = write(tmp_path, 'entity2id.txt', '2\na 0\nb 1\n', encoding='utf-8-sig')
    assert read_openke_dict(path) == ['a', 'b']


@pytest.mark.parametrize('text,line,msg', [
    ('3\na 0\nb 1\n', None, r"the header says 3 rows but the file has 2"),
    ('1\na 0\nb 1\n', None, r"the header says 1 rows but the file has 2"),
    ('two\na 0\nb 1\n', 1, r"expected the number of rows on the first line, got 'two'"),
    ('', None, r"the file is empty"),
    ('3\na 0\nlonely\nc 2\n', 3, r"expected 'name id', got 'lonely'"),
    ('3\na 0\nb x1\nc 2\n', 3, r"id 'x1' is not an integer"),
    ('3\na 0\nb 1.0\nc 2\n', 3, r"id '1.0' is not an integer"),
    ('3\na 0\nb 1\nc 0\n', 4, r"duplicate id 0 \(also given to 'a'\)"),
    ('3\na 0\nb 1\na 2\n', 4, r"duplicate name 'a' \(already id 0\)"),
    ('3\na 0\nb 1\nc 3\n', None, r"ids must be exactly 0..2, found id 3 out of range"),
    ('2\na -1\nb 0\n', None, r"ids must be exactly 0..1, found id -1 out of range"),
])
def test_read_openke_dict_errors(tmp_path, text, line, msg):
    path = write(tmp_path, 'entity2id.txt', text)
    with pytest.raises(ValueError, match=err(path, line) + msg):
        read_openke_dict(path)


# -- OpenKE triples ---------------------------------------------------------------------------
def test_read_openke_triples(tmp_path):
    # OpenKE rows are 'head tail relation'; the result is (head, relation, tail).
    path = write(tmp_path, 'train2id.txt', '4\n0 1 2\n3 0 1\n\n0 1 2\n2 2 0\n')
    out = read_openke_triples(path, 4, 3)
    assert out.dtype == torch.long
    assert out.tolist() == [[0, 2, 1], [3, 1, 0], [0, 2, 1], [2, 0, 2]]


@pytest.mark.parametrize('order', ['hrt', 'htr', 'rht', 'rth', 'thr', 'trh'])
def test_read_openke_triples_orders(tmp_path, order):
    triples = [(0, 1, 2), (3, 0, 1), (2, 2, 3)]  # (h, r, t)
    lines = [' '.join(str(dict(zip('hrt', t))[c]) for c in order) for t in triples]
    path = write(tmp_path, 't.txt', '\n'.join(lines) + '\n')
    out = read_openke_triples(path, 4, 3, order=order, header=False)
    assert out.tolist() == [list(t) for t in triples]


def test_read_openke_triples_empty(tmp_path):
    path = write(tmp_path, 'test2id.txt', '0\n')
    out = read_openke_triples(path, 4, 3)
    assert out.shape == (0, 3) and out.dtype == torch.long


@pytest.mark.parametrize('text,line,msg', [
    ('2\n0 1 2\n', None, r"the header says 2 rows but the file has 1"),
    ('2\n0 1 2\n0 1\n', 3, r"expected 3 integer fields, got '0 1'"),
    ('2\n0 1 2\n0 1 2 3\n', 3, r"expected 3 integer fields"),
    ('2\n0 1 2\n0 b 2\n', 3, r"non-integer field in '0 b 2'"),
    ('2\n0 1 2\n4 1 2\n', 3, r"head entity id 4 is out of range \[0, 4\)"),
    ('2\n0 1 2\n0 -1 2\n', 3, r"tail entity id -1 is out of range \[0, 4\)"),
    ('2\n0 1 2\n0 1 3\n', 3, r"relation id 3 is out of range \[0, 3\)"),
])
def test_read_openke_triples_errors(tmp_path, text, line, msg):
    path = write(tmp_path, 'train2id.txt', text)
    with pytest.raises(ValueError, match=err(path, line) + msg):
        read_openke_triples(path, 4, 3)


def test_read_openke_triples_error_line_without_header(tmp_path):
    path = write(tmp_path, 't.txt', '0 1 2\n\n0 1 9\n')
    with pytest.raises(ValueError, match=err(path, 3) + r"relation id 9"):
        read_openke_triples(path, 4, 3, header=False)


@pytest.mark.parametrize('order', ['hrr', 'hr', 'hrtx', 'abc'])
def test_read_triples_bad_order(tmp_path, order):
    path = write(tmp_path, 't.txt', '0\n')
    with pytest.raises(ValueError, match=r"order must be a permutation of 'hrt'"):
        read_openke_triples(path, 4, 3, order=order)
    with pytest.raises(ValueError, match=r"order must be a permutation of 'hrt'"):
        read_labelled_triples(path, {}, {}, order=order)


# -- labelled triples -------------------------------------------------------------------------
ENTS = {'paris': 0, 'france': 1, 'new york city': 2}
RELS = {'capital of': 0, 'located in': 1}


def test_read_labelled_triples(tmp_path):
    path = write(tmp_path, 'train.txt', 'paris\tcapital of\tfrance\n\n'
                 'new york city \t located in\tfrance\r\nparis\tcapital of\tfrance\n')
    out = read_labelled_triples(path, ENTS, RELS)
    assert out.dtype == torch.long
    assert out.tolist() == [[0, 0, 1], [2, 1, 1], [0, 0, 1]]


def test_read_labelled_triples_order_and_sep(tmp_path):
    path = write(tmp_path, 't.txt', 'france|paris|capital of\n')
    out = read_labelled_triples(path, ENTS, RELS, order='thr', sep='|')
    assert out.tolist() == [[0, 0, 1]]
    path = write(tmp_path, 'w.txt', 'paris france located_in\n')
    out = read_labelled_triples(path, ENTS, {'located_in': 1}, order='htr', sep=None)
    assert out.tolist() == [[0, 1, 1]]


def test_read_labelled_triples_empty(tmp_path):
    path = write(tmp_path, 'test.txt', '\n\n')
    assert read_labelled_triples(path, ENTS, RELS).shape == (0, 3)


@pytest.mark.parametrize('text,line,msg', [
    ('paris\tcapital of\tfrance\nparis\tcapital of\tlondon\n', 2, r"unknown entity 'london'"),
    ('paris\tcapital of\tfrance\n\nrome\tcapital of\tfrance\n', 3, r"unknown entity 'rome'"),
    ('paris\tcapital of\tfrance\nparis\ttwinned with\tfrance\n', 2,
     r"unknown relation 'twinned with'"),
    ('paris\tcapital of france\n', 1, r"expected 3 fields separated by '\\t'"),
    ('paris\tcapital of\tfrance\textra\n', 1, r"expected 3 fields"),
])
def test_read_labelled_triples_errors(tmp_path, text, line, msg):
    path = write(tmp_path, 'valid.txt', text)
    with pytest.raises(ValueError, match=err(path, line) + msg):
        read_labelled_triples(path, ENTS, RELS)


def test_read_labelled_triples_name_with_line_separator(tmp_path):
    path = write(tmp_path, 'train.txt', 'a\u2028b\tr\tc\n')
    assert read_labelled_triples(path, {'a\u2028b': 0, 'c': 1}, {'r': 0}).tolist() == \
        [[0, 0, 1]]


def test_collect_names(tmp_path):
    a = write(tmp_path, 'train.txt', 'x\tr1\ty\ny\tr2\tz\n\nx\tr1\tz\n')
    b = write(tmp_path, 'valid.txt', 'w\tr3\tx\nz\tr1\tv\n')
    ents, rels = collect_names([a, b])
    assert ents == ['x', 'y', 'z', 'w', 'v']
    assert rels == ['r1', 'r2', 'r3']
    ents, rels = collect_names([b, a])
    assert ents == ['w', 'x', 'z', 'v', 'y']
    assert rels == ['r3', 'r1', 'r2']
    c = write(tmp_path, 'rht.txt', 'r9 h t\n')
    assert collect_names([c], order='rht', sep=None) == (['h', 't'], ['r9'])


def test_collect_names_malformed(tmp_path):
    a = write(tmp_path, 'train.txt', 'x\tr1\ty\ny\tr2\n')
    with pytest.raises(ValueError, match=err(a, 2) + r"expected 3 fields"):
        collect_names([a])


# -- tensor files -----------------------------------------------------------------------------
@pytest.mark.parametrize('ext', ['.pt', '.pth'])
def test_load_tensor_file_pt(tmp_path, ext):
    x = torch.randn(5, 3)
    path = osp.join(str(tmp_path), 'text' + ext)
    torch.save(x, path)
    out = load_tensor_file(path)
    assert torch.equal(out, x)
    mask = torch.tensor([True, False, True])
    torch.save(mask, path)
    assert torch.equal(load_tensor_file(path), mask)


def test_load_tensor_file_npy(tmp_path):
    x = np.random.rand(4, 2).astype(np.float32)
    path = osp.join(str(tmp_path), 'image.npy')
    np.save(path, x)
    out = load_tensor_file(path)
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(x))
    np.save(path, np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)))
    out = load_tensor_file(path)
    assert out.dtype == torch.float64 and out.tolist() == [[0, 1, 2], [3, 4, 5]]
    np.save(path, np.array([True, False]))
    assert load_tensor_file(path).tolist() == [True, False]


def test_load_tensor_file_refuses_pickled_npy(tmp_path):
    path = osp.join(str(tmp_path), 'text.npy')
    np.save(path, np.array([{'a': 1}, 'x'], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=err(path) + r"not a plain numpy array"):
        load_tensor_file(path)


def test_load_tensor_file_refuses_non_tensor(tmp_path):
    path = osp.join(str(tmp_path), 'text.pt')
    torch.save({'x': torch.ones(2)}, path)
    with pytest.raises(ValueError, match=err(path) + r"expected a tensor, found dict"):
        load_tensor_file(path)
    torch.save([torch.ones(2)], path)
    with pytest.raises(ValueError, match=err(path) + r"expected a tensor, found list"):
        load_tensor_file(path)


class Payload:
    r"""An arbitrary picklable object; unpickling it with weights_only=False would create a
    file as a side effect."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


REFUSED_OPEN = r"cannot read the tensor file: it refers to the Python object .io.open."


def test_load_tensor_file_refuses_arbitrary_pickle(tmp_path):
    path = osp.join(str(tmp_path), 'text.pt')
    marker = osp.join(str(tmp_path), 'pwned')
    with open(path, 'wb') as f:
        pickle.dump(Payload(marker), f, protocol=2)
    with pytest.raises(ValueError, match=err(path) + REFUSED_OPEN):
        load_tensor_file(path)
    assert not osp.exists(marker)
    torch.save(Payload(marker), path)
    with pytest.raises(ValueError, match=err(path) + REFUSED_OPEN):
        load_tensor_file(path)
    assert not osp.exists(marker)


def test_load_tensor_file_unsupported_extension(tmp_path):
    path = write(tmp_path, 'text.csv', '1,2\n')
    with pytest.raises(ValueError, match=err(path) + r"unsupported feature file type '.csv'"):
        load_tensor_file(path)


def test_find_file_and_list_feature_files(tmp_path):
    folder = str(tmp_path)
    assert list_feature_files(osp.join(folder, 'missing')) == {}
    torch.save(torch.ones(1), osp.join(folder, 'text.pth'))
    np.save(osp.join(folder, 'image.npy'), np.ones(1))
    torch.save(torch.ones(1), osp.join(folder, 'text_mask.pt'))
    write(folder, 'text_index.txt', 'a\n')
    write(folder, 'notes.md', 'x\n')
    assert find_file(folder, 'text') == osp.join(folder, 'text.pth')
    assert find_file(folder, 'audio') is None
    assert find_file(folder, 'text', exts=('.npy', )) is None
    assert list_feature_files(folder) == {
        'image': osp.join(folder, 'image.npy'),
        'text': osp.join(folder, 'text.pth'),
        'text_mask': osp.join(folder, 'text_mask.pt'),
    }
    np.save(osp.join(folder, 'text.npy'), np.ones(1))
    with pytest.raises(ValueError, match=r"both text.npy and text.pth define 'text'"):
        list_feature_files(folder)
    os.remove(osp.join(folder, 'text.npy'))
