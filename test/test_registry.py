import ast
import pickle

import pytest

from torch_mmkg.registry import Registry, UnknownComponentError, normalize_name


class A:
    def __init__(self, x=0, y=0):
        self.x, self.y = x, y


class B(A):
    pass


class C(A):
    pass


def _registry():
    reg = Registry('fusion')
    reg.register('Negative_Sampling', A, aliases=('ns', 'Negatives'))
    reg.register('beta', B)
    return reg


def test_imports_only_the_standard_library():
    import torch_mmkg.registry as module
    tree = ast.parse(open(module.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, 'no relative imports'
            imported.add(node.module.split('.')[0])
    assert imported == {'difflib', 'collections', 'typing'}
    assert set(module.__all__) == {'Registry', 'UnknownComponentError', 'normalize_name'}


@pytest.mark.parametrize('name', ['Negative_Sampling', 'negative-sampling', 'negativesampling',
                                  'NEGATIVE SAMPLING', 'nEgAtIvE_-_sAmPlInG', 'NS', 'negatives',
                                  'Ne-ga-tives'])
def test_normalised_names_and_aliases(name):
    reg = _registry()
    assert name in reg
    assert reg[name] is A and reg.get(name) is A
    assert reg.canonical(name) == 'Negative_Sampling'


def test_normalize_name():
    assert normalize_name('Tuck-ER') == normalize_name('tucker') == 'tucker'
    assert normalize_name('Straße') == normalize_name('STRASSE')  # casefold, not lower
    with pytest.raises(TypeError, match='must be a string'):
        normalize_name(3)


def test_unknown_names():
    reg = _registry()
    assert 'gamma' not in reg and None not in reg and 3 not in reg
    assert reg.get('gamma') is None and reg.get('gamma', 7) == 7 and reg.get(None) is None
    for lookup in (reg.__getitem__, reg.canonical, reg.aliases, reg.build, reg.unregister):
        with pytest.raises(UnknownComponentError):
            lookup('gamma')


def test_error_message():
    reg = Registry('model')
    for name in ('transe', 'rotate', 'distmult', 'complex'):
        reg.register(name, type(name, (), {}))
    with pytest.raises(UnknownComponentError) as info:
        reg['Rotat']
    e = info.value
    assert str(e) == ("unknown model 'Rotat'; choose from ['complex', 'distmult', 'rotate', "
                      "'transe']; did you mean 'rotate'?")
    assert isinstance(e, KeyError) and isinstance(e, ValueError)
    assert (e.kind, e.name, e.suggestions) == ('model', 'Rotat', ['rotate'])
    assert e.choices == ['complex', 'distmult', 'rotate', 'transe']
    # A suggestion found through an alias names the canonical name.
    reg.register('pairre', type('PairRE', (), {}), aliases=('paired-relations',))
    with pytest.raises(KeyError, match="did you mean 'pairre'"):
        reg['paired-relation']
    # No close name: no suggestion; a name that is not a string is shown as its repr.
    with pytest.raises(ValueError) as info:
        reg.canonical('xyzzy')
    assert 'did you mean' not in str(info.value) and "unknown model 'xyzzy'" in str(info.value)
    with pytest.raises(UnknownComponentError, match=r"^unknown model None; choose from \["):
        reg[None]
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is UnknownComponentError and str(again) == str(e)


def test_conflicting_registration():
    reg = _registry()
    with pytest.raises(ValueError, match=r"cannot register .*\.C as fusion 'NEGATIVES': "
                                         r"'NEGATIVES' already names fusion 'Negative_Sampling' "
                                         r"\(.*\.A\)"):
        reg.register('gamma', C, aliases=('other', 'NEGATIVES'))
    with pytest.raises(ValueError, match=r"\.C as fusion 'Beta'.*\(.*\.B\)"):
        reg.register('Beta', C)
    with pytest.raises(ValueError, match="is empty"):
        reg.register('-_ ', C)
    with pytest.raises(TypeError):
        reg.register('gamma', C, aliases=(1,))
    # Nothing of a refused registration is kept.
    assert 'gamma' not in reg and 'other' not in reg and reg.names() == ['Negative_Sampling',
                                                                         'beta']
    # The same object again: a no-op, and new aliases are added.
    assert reg.register('negative-sampling', A, aliases=('NS', 'neg')) is A
    assert reg.names() == ['Negative_Sampling', 'beta']
    assert reg.aliases('neg') == ('ns', 'Negatives', 'neg')


def test_decorator_and_call():
    reg = Registry('interaction')

    @reg.register('Gamma', aliases='g')
    class Gamma:
        pass

    assert reg['gamma'] is Gamma and reg['G'] is Gamma and reg.aliases('gamma') == ('g',)
    assert reg.register('delta', A) is A
    with pytest.raises(TypeError):  # a bad name fails when the decorator is made
        reg.register(None)


def test_aliases_and_canonical():
    reg = Registry('regime')
    reg.register('1-n', '1-n', aliases=('one_to_n', '1n'))
    assert reg.aliases('One-To-N') == ('one_to_n',)  # '1n' is the name itself, normalised
    assert reg.canonical('1N') == reg.canonical('ONE TO N') == '1-n'
    assert reg.aliases('1-n') == ('one_to_n',)


def test_dict_like_and_registration_order():
    reg = Registry('model')
    classes = {name: type(name, (), {}) for name in ('zeta', 'alpha', 'mu', 'beta')}
    for name, cls in classes.items():
        reg.register(name, cls, aliases=(name + '_alias',))
    assert reg.names() == list(reg) == list(reg.keys()) == ['zeta', 'alpha', 'mu', 'beta']
    assert dict(reg) == classes and list(reg.items()) == list(classes.items())
    assert list(reg.values()) == list(classes.values())
    assert sorted(reg) == ['alpha', 'beta', 'mu', 'zeta'] and len(reg) == 4
    assert {name: cls for name, cls in reg.items()} == classes
    assert 'ZETA' in reg.keys() and 'zeta_alias' in reg
    assert reg == classes  # a Mapping compares by items
    assert repr(reg) == "Registry('model', ['zeta', 'alpha', 'mu', 'beta'])"


def test_build():
    reg = _registry()
    built = reg.build('NS', x=1, y=2)
    assert type(built) is A and (built.x, built.y) == (1, 2)
    built = reg.build(C, x=3)  # a class, even an unregistered one, is called
    assert type(built) is C and built.x == 3
    instance = B()
    assert reg.build(instance) is instance  # an instance is returned unchanged
    with pytest.raises(TypeError, match=r"already built.*\['x', 'y'\]"):
        reg.build(instance, y=1, x=2)
    with pytest.raises(UnknownComponentError, match="did you mean 'beta'"):
        reg.build('bet')


def test_lookup():
    reg = _registry()
    assert reg.lookup(A) == 'Negative_Sampling' and reg.lookup(B) == 'beta'
    assert reg.lookup(C) is None and reg.lookup(A()) is None


def test_unregister_and_patch(monkeypatch):
    reg = _registry()
    monkeypatch.setitem(reg, 'gamma', C)
    monkeypatch.setitem(reg, 'NS', B)  # replaces the object, keeps the name and aliases
    assert reg['gamma'] is C and reg['negatives'] is B
    assert reg.names() == ['Negative_Sampling', 'beta', 'gamma']
    monkeypatch.undo()
    assert reg.names() == ['Negative_Sampling', 'beta'] and reg['negatives'] is A
    assert reg.unregister('Negatives') is A
    assert 'ns' not in reg and 'negative_sampling' not in reg and reg.names() == ['beta']
    reg.register('ns', C)  # the alias is free again
    assert reg['NS'] is C


def test_kind_is_checked():
    with pytest.raises(TypeError):
        Registry('')


def test_model_registry():
    from torch_mmkg.nn import MODELS, RotatE, TuckER
    assert isinstance(MODELS, Registry) and MODELS.kind == 'model'
    assert MODELS.names() == ['transe', 'distmult', 'complex', 'rotate', 'pairre', 'tucker',
                              'native', 'tbkgc', 'momok', 'lbmkgc', 'vbkgc', 'literale', 'kbln',
                              'ikrl', 'qeb', 'transae', 'mmkrl', 'adamf', 'imf', 'mose',
                              'vista', 'mygo', 'rsme', 'otkge', 'mkgformer']
    assert MODELS['RotatE'] is MODELS['ROTATE'] is MODELS['rotate'] is RotatE
    assert MODELS['Tuck-ER'] is TuckER and MODELS.lookup(RotatE) == 'rotate'
