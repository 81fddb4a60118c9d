r"""Every shipped config (:obj:`examples/configs/*.yaml`) against the settings its header
claims: the authors' scripts (research/anchors.md §3.2 NATIVE, §3.4 MoMoK, §3.5 LBMKGC, the
VBKGC paper) or, for our own settings, the example script they come from."""
import ast
import math
import os
import os.path as osp
import re

import pytest

from torch_mmkg import cli

pytest.importorskip('yaml')

ROOT = osp.join(osp.dirname(__file__), '..')
CONFIG_DIR = osp.join(ROOT, 'examples', 'configs')
CONFIGS = sorted(f for f in os.listdir(CONFIG_DIR) if f.endswith('.yaml'))

#: OpenKE's C++ sampler, which NATIVE, AdaMF-MAT and LBMKGC train with (anchors §3.1:
#: bern_flag=1, a side drawn per negative, always filtered against training, positives drawn
#: uniformly with replacement).
OPENKE_SAMPLER = dict(sampling='bernoulli', corrupt_side_per='negative', filter_negatives=True,
                      sample_with_replacement=True)


def native(dataset, dim, gamma, lr, negatives, mu, regul):
    r"""NATIVE's run_adv_wgan_gp*.py (anchors §3.2): batch 1024, 1000 epochs, adversarial
    temperature 2, generator lr = lr, CoMAT GP 0.1, noise 64, hidden 512."""
    return dict(dataset=dataset, model='native',
                model_args=dict(hidden_channels=dim, margin=gamma, adversarial_temperature=2.0,
                                regularization_weight=regul),
                train=dict(epochs=1000, batch_size=1024, lr=lr, num_negatives=negatives,
                           **OPENKE_SAMPLER),
                comat=dict(adversarial_weight=mu, gradient_penalty=0.1, noise_channels=64,
                           hidden_channels=512))


def lbmkgc(dataset, gamma, lr, epochs):
    r"""LBMKGC's args.py and run.sh (anchors §3.5): d 500, batch 512, 128 negatives,
    adversarial temperature 4, regul_rate 1e-5, bern_flag=1."""
    return dict(dataset=dataset, model='lbmkgc',
                model_args=dict(hidden_channels=500, margin=gamma, adversarial_temperature=4.0,
                                regularization_weight=1e-5, fusion='context',
                                use_structure=True, alignment_weight=0.0),
                train=dict(epochs=epochs, batch_size=512, lr=lr, num_negatives=128,
                           **OPENKE_SAMPLER))


def momok(dataset, dim, lr):
    r"""MoMoK's train.py and README (anchors §3.4): r_dim 256, 3 experts, 2 heads,
    lambda 1e-4, BCE with label smoothing, batch 1024, 2000 epochs."""
    return dict(dataset=dataset, model='momok',
                model_args=dict(hidden_channels=dim, relation_channels=256, num_experts=3,
                                num_heads=2, club_weight=1e-4, label_smoothing=0.1,
                                objective='bce'),
                train=dict(epochs=2000, batch_size=1024, lr=lr))


#: Per config, the values it must hold (model_args, train and the CoMAT block).
EXPECTED = {
    'native_db15k.yaml': native('DB15K', 250, 12.0, 1e-4, 128, 1e-4, 0.0),
    'native_mkgw.yaml': native('MKG-W', 250, 4.0, 1e-4, 128, 1e-4, 1e-5),
    'native_mkgy.yaml': native('MKG-Y', 250, 4.0, 1e-4, 128, 1e-4, 1e-5),
    'native_kvc16k.yaml': native('KVC16K', 250, 4.0, 2e-5, 32, 1e-5, 1e-5),
    'native_tiva.yaml': native('TIVA', 150, 4.0, 2e-5, 64, 1e-4, 1e-5),
    'lbmkgc_mkgw.yaml': lbmkgc('MKG-W', 16.0, 1e-5, 1000),
    'lbmkgc_mkgy.yaml': lbmkgc('MKG-Y', 24.0, 1e-5, 1250),
    'lbmkgc_db15k.yaml': lbmkgc('DB15K', 12.0, 2e-5, 1250),
    'momok_db15k.yaml': momok('DB15K', 256, 5e-4),
    'momok_kvc16k.yaml': momok('KVC16K', 256, 5e-4),
    'momok_mkgw.yaml': momok('MKG-W', 200, 1e-3),
    'momok_mkgy.yaml': momok('MKG-Y', 300, 5e-4),
    # NATIVE's training settings (anchors §3.2) for its RotatE baseline
    'rotate_mkgw_native.yaml': dict(
        dataset='MKG-W', model='rotate',
        model_args=dict(hidden_channels=250, margin=4.0, adversarial_temperature=2.0),
        train=dict(epochs=1000, batch_size=1024, lr=1e-4, num_negatives=128,
                   **OPENKE_SAMPLER)),
    # VBKGC (papers/VBKGC-2022.md §5; DESIGN §5): d 128, k = 16, about 100 batches of
    # WN9-IMG's 11,741 training triples, best WN9 margin 8, Eq. 14 filters negatives
    'vbkgc_wn9.yaml': dict(
        dataset='WN9-IMG', model='vbkgc',
        model_args=dict(hidden_channels=128, margin=8.0),
        train=dict(batch_size=118, num_negatives=16, twins=True, filter_negatives=True)),
    # IKRL's original C++ code (research/baselines.md 2.1: Train.cpp, Test.cpp, README): d 50,
    # margin 4, L1, one hinge per energy, ranking with d(i, i), 100 batches per epoch drawn
    # with replacement, one filtered uniform negative, SGD at 0.001 per triple (x 792, the
    # batch, for a batch-mean loss), 15000 epochs
    'ikrl_db15k.yaml': dict(
        dataset='DB15K', model='ikrl',
        model_args=dict(hidden_channels=50, margin=4.0, p_norm=1.0, test_energy='image',
                        per_term_loss=True, multi_image_attention=True, normalize=False),
        train=dict(epochs=15000, batch_size=792, optimizer='sgd', lr=0.792, num_negatives=1,
                   sampling='uniform', filter_negatives=True, sample_with_replacement=True)),
    # QEB's TensorFlow code (research/baselines.md 2.4: parameters.py, train.py): d 100,
    # margin 10, the ten L1 energies summed, tanh, Adam 1e-3, batch 100, 1000 epochs, a tail-
    # and a head-corrupted negative per positive
    'qeb_tiva.yaml': dict(
        dataset='TIVA', model='qeb',
        model_args=dict(hidden_channels=100, margin=10.0, p_norm=1.0, aggregate='sum',
                        activation='tanh', normalize=False),
        train=dict(epochs=1000, batch_size=100, optimizer='adam', lr=1e-3, num_negatives=2,
                   corrupt_side_per='negative', filter_negatives=True)),
    # LiteralE's README command for DistMult+LiteralE (research/baselines.md 2.13:
    # main_literal.py, model.py DistMultLiteral_gate): d 100, batch 128, lr 1e-3, 100 epochs,
    # input dropout 0.2, 1-N BCE without label smoothing
    'literale_db15k.yaml': dict(
        dataset='DB15K', model='literale',
        model_args=dict(hidden_channels=100, base='distmult', gate=True, input_dropout=0.2,
                        label_smoothing=0.0),
        train=dict(regime='1-n', epochs=100, batch_size=128, lr=1e-3)),
    # KBLN in the LiteralE repository (research/baselines.md 2.14: main_kbln.py, model.py
    # KBLN): d 200 hard-coded, batch 128, lr 1e-3, label smoothing 0.1 (the ConvE framework's
    # default), 1-N BCE; 100 epochs and input dropout 0.2 of the README's LiteralE commands
    'kbln_db15k.yaml': dict(
        dataset='DB15K', model='kbln',
        model_args=dict(hidden_channels=200, input_dropout=0.2, label_smoothing=0.1),
        train=dict(regime='1-n', epochs=100, batch_size=128, lr=1e-3)),
    # TransAE (research/baselines.md 2.2: ksolaiman/TransAE main.py flags): d 50, margin 1,
    # beta 0.4 with the reconstruction weighted 1, lr 0.01, batch 128, one uniform negative per
    # positive, 2000 epochs, selection on validation Hits@10; the text input only (no images
    # offline), Adam for its RMSprop
    'transae_wn9.yaml': dict(
        dataset='WN9-IMG', model='transae',
        model_args=dict(hidden_channels=50, modalities=['gloss'], margin=1.0,
                        ranking_weight=0.4, reconstruction_weight=1.0, missing='noise'),
        train=dict(epochs=2000, batch_size=128, lr=0.01, num_negatives=1, sampling='uniform',
                   corrupt_side_per='positive', filter_negatives=False, metric='hits@10')),
    # MMKRL (research/baselines.md 2.3): no script exists for it; ours, near the zjukg
    # framework: d 250 and batch 1024 (NATIVE 5.5.2), Adam, margin 6 (OpenKE MarginLoss),
    # knowledge alignment weight 1, OpenKE's sampler, 32 negatives, lr 1e-3, 1000 epochs
    'mmkrl_db15k.yaml': dict(
        dataset='DB15K', model='mmkrl',
        model_args=dict(hidden_channels=250, margin=6.0, alignment_weight=1.0,
                        trainable_features=True),
        train=dict(epochs=1000, batch_size=1024, lr=1e-3, optimizer='adam', num_negatives=32,
                   **OPENKE_SAMPLER)),
    # ours: the defaults of examples/rotate_mkgw.py (checked below)
    'rotate_mkgw.yaml': dict(
        dataset='MKG-W', model='rotate',
        model_args=dict(hidden_channels=250, margin=6.0, adversarial_temperature=1.0),
        train=dict(epochs=1000, max_minutes=15.0, batch_size=1024, lr=1e-3, num_negatives=64,
                   eval_every=5, seed=0)),
}

#: The modalities each dataset builds from public files, offline (DESIGN §3).
OFFLINE_MODALITIES = {'MKG-W': ['text'], 'MKG-Y': ['text'], 'DB15K': ['numeric', 'text'],
                      'TIVA': ['text'], 'KVC16K': [], 'WN9-IMG': ['gloss', 'text']}

_NUM = r'(\d[\d.]*(?:e-?\d+)?)'
#: Claims a header may make: a pattern and the config value it names (section, key[, key]).
CLAIMS = [
    (r'\bd (\d+)\b', ('model_args', 'hidden_channels')),
    (r'\br_dim (\d+)\b', ('model_args', 'relation_channels')),
    (r'\bbatch (\d+)\b', ('train', 'batch_size')),
    (r'\b(\d+) negatives\b', ('train', 'num_negatives')),
    (r'\bgamma ' + _NUM, ('model_args', 'margin')),
    (r'\bmargin ' + _NUM, ('model_args', 'margin')),
    (r'\badversarial temperature ' + _NUM, ('model_args', 'adversarial_temperature')),
    (r'\blr ' + _NUM, ('train', 'lr')),
    (r'\b(\d+) epochs\b', ('train', 'epochs')),
    (r'\b(\d+) CPU minutes\b', ('train', 'max_minutes')),
    (r'\bmu ' + _NUM, ('train', 'comat', 'adversarial_weight')),
    (r'\bgradient penalty ' + _NUM, ('train', 'comat', 'gradient_penalty')),
    (r'\blambda ' + _NUM, ('model_args', 'club_weight')),
    (r'\bL2 ' + _NUM, ('model_args', 'regularization_weight')),
    (r'\blabel smoothing ' + _NUM, ('model_args', 'label_smoothing')),
]
#: Claims in words, and the values they stand for.
WORD_CLAIMS = [
    ('Bernoulli side per negative', {('train', 'sampling'): 'bernoulli',
                                     ('train', 'corrupt_side_per'): 'negative'}),
    ('negatives filtered', {('train', 'filter_negatives'): True}),
    ('drawn with replacement', {('train', 'sample_with_replacement'): True}),
    ('no L2 term', {('model_args', 'regularization_weight'): 0.0}),
]


def load(name):
    return cli.load_config_file(osp.join(CONFIG_DIR, name))


def header(name) -> str:
    r"""The leading comment block, one line of text."""
    lines = []
    with open(osp.join(CONFIG_DIR, name)) as f:
        for line in f:
            if not line.startswith('#'):
                break
            lines.append(line[1:].strip())
    return ' '.join(lines)


class _Missing:
    def __repr__(self):
        return 'missing'


MISSING = _Missing()


def get(cfg, path):
    node = cfg
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


def same(got, want) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=0.0)
    return got == want


def test_every_config_has_a_reference():
    assert sorted(EXPECTED) == CONFIGS, "add the new config's reference values to EXPECTED"


@pytest.mark.parametrize('name', CONFIGS)
def test_config_follows_its_reference(name):
    cfg, want = load(name), EXPECTED[name]
    assert cfg['dataset'] == want['dataset'] and cfg['model'] == want['model']
    wrong = []
    for section in ('model_args', 'train'):
        for key, value in want[section].items():
            got = get(cfg, (section, key))
            if not same(got, value):
                wrong.append(f"{section}.{key}: {got!r}, expected {value!r}")
    for key, value in want.get('comat', {}).items():
        got = get(cfg, ('train', 'comat', key))
        if not same(got, value):
            wrong.append(f"train.comat.{key}: {got!r}, expected {value!r}")
    assert not wrong, f"{name} disagrees with its reference: " + '; '.join(wrong)


@pytest.mark.parametrize('name', CONFIGS)
def test_header_says_what_the_config_does(name):
    cfg, text = load(name), header(name)
    claims = []
    for pattern, path in CLAIMS:
        for match in re.finditer(pattern, text):
            claim = match.group(1).rstrip('.')
            got = get(cfg, path)
            claims.append(path)
            value = float(claim) if any(c in claim for c in '.e') else int(claim)
            assert got is not MISSING and same(float(got), float(value)), (
                f"{name}: the header says {match.group(0)!r}, the config has "
                f"{'.'.join(path)} = {got!r}")
    for words, values in WORD_CLAIMS:
        if words in text:
            for path, value in values.items():
                got = get(cfg, path)
                if path[-1] == 'regularization_weight' and got is MISSING:
                    continue  # a model without an L2 term
                claims.append(path)
                assert same(got, value), (f"{name}: the header says {words!r}, the config "
                                          f"has {'.'.join(path)} = {got!r}")
    assert claims, f"{name}: the header claims no setting"


@pytest.mark.parametrize('name', [n for n in CONFIGS if n.startswith(('native', 'lbmkgc'))])
def test_openke_sampler_is_claimed(name):
    # The NATIVE and LBMKGC authors train with OpenKE's sampler; the header says so.
    text = header(name)
    for words in ('Bernoulli side per negative', 'negatives filtered',
                  'drawn with replacement'):
        assert words in text, f"{name}: the header does not say {words!r}"


def test_rotate_mkgw_is_the_example_script():
    # rotate_mkgw.yaml claims "the settings of examples/rotate_mkgw.py": its defaults
    tree = ast.parse(open(osp.join(ROOT, 'examples', 'rotate_mkgw.py')).read())
    defaults = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, 'attr', '') == 'add_argument'
                and node.args and isinstance(node.args[0], ast.Constant)):
            for kw in node.keywords:
                if kw.arg == 'default' and isinstance(kw.value, ast.Constant):
                    defaults[node.args[0].value.lstrip('-')] = kw.value.value
    cfg = load('rotate_mkgw.yaml')
    pairs = {'dim': ('model_args', 'hidden_channels'), 'margin': ('model_args', 'margin'),
             'temperature': ('model_args', 'adversarial_temperature'),
             'epochs': ('train', 'epochs'), 'minutes': ('train', 'max_minutes'),
             'lr': ('train', 'lr'), 'batch_size': ('train', 'batch_size'),
             'num_negatives': ('train', 'num_negatives'), 'eval_every': ('train', 'eval_every'),
             'seed': ('train', 'seed')}
    for arg, path in pairs.items():
        assert same(float(get(cfg, path)), float(defaults[arg])), (arg, defaults[arg])


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_on_what_can_be_built(name):
    r"""Every config parses, its training options are known, and its model builds on a small
    graph with the modalities its dataset builds offline; a config that needs modalities no
    public file gives names, in its header, the authors' files to supply."""
    import torch

    from torch_mmkg.datasets import DATASETS, FakeMMKGDataset
    from torch_mmkg.nn import MODELS
    from torch_mmkg.training import CoMAT, TrainConfig
    path = osp.join(CONFIG_DIR, name)
    cfg = cli.resolve_config(cli.build_parser().parse_args(['train', '--config', path]))
    train = TrainConfig.from_dict(cfg['train'])  # every training key is known
    for key, value in cfg['train'].items():
        if key != 'comat':
            assert same(getattr(train, key), value), key
    args = dict(cfg['model_args'])
    dim = args.pop('hidden_channels')
    cls = MODELS[cfg['model']]
    offline = OFFLINE_MODALITIES[cfg['dataset']]
    wanted = args.get('modalities')
    if not hasattr(cls, 'from_data'):
        model = cls(10, 2, dim, **args)
    elif wanted is not None and not set(wanted) <= set(offline):
        lacking = [m for m in wanted if m not in offline]
        folder = DATASETS[cfg['dataset']].folder
        suffix = {'image': 'visual', 'text': 'textual', 'audio': 'audio', 'video': 'video',
                  'numeric': 'numeric'}
        text = header(name)
        assert 'YOU MUST SUPPLY' in text
        for m in lacking:
            assert f'{folder}-{suffix[m]}.pth' in text, (name, m)
        names = wanted
    else:
        names = wanted or offline
        assert names, f"{name}: no modality for a multi-modal model offline"
    if hasattr(cls, 'from_data'):
        data = FakeMMKGDataset(num_entities=12, num_relations=2, num_triples=20,
                               modalities={m: 3 + i for i, m in enumerate(names)}, seed=0)[0]
        torch.manual_seed(0)
        model = cls.from_data(data, dim, **args)
        assert model.modalities == list(names)
    assert model.hidden_channels == dim
    if train.comat is not None:
        CoMAT(model, **train.comat)  # every CoMAT key is known
