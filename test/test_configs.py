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


def adamf(dataset, dim, mu):
    r"""AdaMF-MAT's run_adamf_mat.py and scripts/run_*.sh (anchors §3.3): gamma 12, batch
    1024, 128 negatives, lr 2e-5, 1000 epochs, adversarial temperature 2, the generators'
    lr 1e-4 (args.py), noise 64, hidden 512, OpenKE's sampler (bern_flag=1, filter_flag=1);
    the scripts pass -mu=0."""
    return dict(dataset=dataset, model='adamf',
                model_args=dict(hidden_channels=dim, margin=12.0, adversarial_temperature=2.0),
                train=dict(epochs=1000, batch_size=1024, lr=2e-5, num_negatives=128,
                           **OPENKE_SAMPLER,
                           mat=dict(adversarial_weight=mu, generator_lr=1e-4, noise_channels=64,
                                    hidden_channels=512)))


def mmkrl(dataset, adversary=False):
    r"""MMKRL (research/baselines.md 2.3): no script exists for it; ours, near the zjukg
    framework: d 250 and batch 1024 (NATIVE 5.5.2), Adam, margin 6 (OpenKE MarginLoss),
    knowledge alignment weight 1, OpenKE's sampler, 32 negatives, lr 1e-3, 1000 epochs; with
    :obj:`adversary`, MMKRLTrainer's adversarial part."""
    train = dict(epochs=1000, batch_size=1024, lr=1e-3, optimizer='adam', num_negatives=32,
                 **OPENKE_SAMPLER)
    if adversary:
        train['mmkrl_adversary'] = dict(adversarial_weight=0.07, synthetic_pairing='batch',
                                        noise_channels=64, hidden_channels=512,
                                        generator_lr=1e-3)
    return dict(dataset=dataset, model='mmkrl',
                model_args=dict(hidden_channels=250, margin=6.0, alignment_weight=1.0,
                                trainable_features=True),
                train=train)


def rsme(dataset):
    r"""RSME's learn.py defaults and config.py (research/baselines.md 2.5)."""
    return dict(dataset=dataset, model='rsme',
                model_args=dict(modalities=['image'], hidden_channels=1000, alpha=0.7,
                                beta=0.5, forget_gate='mrp', combine='mix', similarity='raw',
                                regularization='n3', regularization_weight=0.0,
                                init_scale=1e-3),
                train=dict(regime='1-n', optimizer='adagrad', epochs=50, batch_size=1000,
                           lr=0.1))


def otkge(dataset):
    r"""OTKGE's FB-IMG settings (research/baselines.md 2.6)."""
    return dict(dataset=dataset, model='otkge',
                model_args=dict(modalities=['image', 'text'], hidden_channels=500,
                                modality_weights={'image': 0.1, 'text': 0.7}, scale=300.0,
                                ot_entities=10, ot_epsilon=10.0, regularization='n3',
                                regularization_weight=1e-3, init_scale=1e-3),
                train=dict(regime='1-n', optimizer='adagrad', epochs=150, batch_size=5000,
                           lr=0.1))


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
    # KBGAN (research/baselines.md 2.15: config_fb15k237.yaml, gan_train.py): TransE D and
    # DistMult G of d 50, hinge 3, 20 candidates, 1 negative, previous epoch's mean reward,
    # G weight decay 0.01, Adam 1e-3, 100 batches per epoch, 5000 epochs
    'kbgan_db15k.yaml': dict(
        dataset='DB15K', model='transe',
        model_args=dict(hidden_channels=50, p_norm=1.0),
        train=dict(regime='kbgan', epochs=5000, batch_size=793, optimizer='adam', lr=1e-3,
                   num_negatives=1, sampling='bernoulli',
                   regime_args=dict(generator='distmult',
                                    generator_args=dict(hidden_channels=50,
                                                        regularization_weight=0.0),
                                    num_candidates=20, temperature=1.0, baseline='epoch',
                                    generator_reduction='sum', generator_weight_decay=0.01,
                                    margin=3.0, generator_checkpoint=None,
                                    discriminator_checkpoint=None))),
    # MANS (research/baselines.md 2.16: scripts/run_*_db15k.sh, run.py, MMTransE.py): d 128,
    # margin 12, K = 1, 400 batches per epoch, 1000 epochs, Adam lr 1.0, beta 0.3, OpenKE's
    # sampler, normalised L1 TransE energies, linear image projection with bias
    'mans_db15k.yaml': dict(
        dataset='DB15K', model='ikrl',
        model_args=dict(hidden_channels=128, modalities=['image'], margin=12.0, p_norm=1.0,
                        normalize=True, projection_bias=True, trainable_features=False,
                        test_energy='all', per_term_loss=False),
        train=dict(regime='mans', epochs=1000, batch_size=199, optimizer='adam', lr=1.0,
                   num_negatives=1, **OPENKE_SAMPLER, regime_args=dict(mode='A', beta=0.3))),
    # MMRNS's README command (research/baselines.md 2.17): TransE d 200, gamma 6, alpha 0.5,
    # K = 20, pre-sample 1500, exploration temperature 10, loss rate 100, lr and KCA lr 1e-4,
    # batch 400, 100,000 steps with validation every 10,000
    'mmrns_mkgw.yaml': dict(
        dataset='MKG-W', model='transe',
        model_args=dict(hidden_channels=200, margin=6.0, adversarial_temperature=0.5),
        train=dict(regime='mmrns', epochs=1163, batch_size=400, lr=1e-4, num_negatives=20,
                   eval_every=116,
                   regime_args=dict(pre_sample=1500, temperature=10.0, loss_rate=100.0,
                                    kca_lr=1e-4, visual='image', textual='text',
                                    attention_channels=50, gate_channels=100))),
    'mmrns_db15k.yaml': dict(
        dataset='DB15K', model='transe',
        model_args=dict(hidden_channels=200, margin=6.0, adversarial_temperature=0.5),
        train=dict(regime='mmrns', epochs=503, batch_size=400, lr=1e-4, num_negatives=20,
                   eval_every=50,
                   regime_args=dict(pre_sample=1500, temperature=10.0, loss_rate=100.0,
                                    kca_lr=1e-4, visual='image', textual='text',
                                    attention_channels=50, gate_channels=100))),
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
    # MMKRL, ours (see mmkrl()), and with its adversarial training (MMKRLTrainer: weight 0.07
    # hard-coded, every positive against every synthetic triple; BaseGenerator: hidden 512;
    # noise 64 as in the other adversarial scripts; the generator's lr the model's)
    'mmkrl_db15k.yaml': mmkrl('DB15K'),
    'mmkrl_mkgw.yaml': mmkrl('MKG-W'),
    'mmkrl_adv_db15k.yaml': mmkrl('DB15K', adversary=True),
    'mmkrl_adv_mkgw.yaml': mmkrl('MKG-W', adversary=True),
    # AdaMF-MAT's scripts (mu 0, i.e. AdaMF) and MAT switched on (mu 1e-4)
    'adamf_db15k.yaml': adamf('DB15K', 250, 0.0),
    'adamf_mkgw.yaml': adamf('MKG-W', 200, 0.0),
    'adamf_mat_db15k.yaml': adamf('DB15K', 250, 1e-4),
    'adamf_mat_mkgw.yaml': adamf('MKG-W', 200, 1e-4),
    # MKGformer's FB15k-237 script (research/baselines.md 2.11: MKG/scripts/fb15k-237-image.sh,
    # lit_models/base.py): lr 4e-5, batch 96, 12 epochs, --bce 1, max_seq_length 64, AdamW
    # with weight decay 0.01, M-Encoder in the top 4 of 12 layers (modeling_unimo.py)
    'mkgformer_db15k.yaml': dict(
        dataset='DB15K', model='mkgformer',
        model_args=dict(hidden_channels=768, modalities=['image'], num_fusion_layers=4,
                        objective='bce', label_smoothing=0.0, max_length=64),
        train=dict(regime='1-n', epochs=12, batch_size=96, lr=4e-5, optimizer='adamw',
                   weight_decay=0.01)),
    # IMF's main.py defaults (research/baselines.md 2.7): d = r_dim = 256, 2 Mutan heads,
    # BCE with label smoothing 0.1 (0.9 y + 1/N), Adam 5e-4, batch 256, 1000 epochs, seed
    # 10010, equal decision weights (the code); no MKG-W script, the same settings
    'imf_db15k.yaml': dict(
        dataset='DB15K', model='imf',
        model_args=dict(hidden_channels=256, relation_channels=256, num_heads=2,
                        label_smoothing=0.1, decision='mean'),
        train=dict(regime='1-n', epochs=1000, batch_size=256, optimizer='adam', lr=5e-4,
                   seed=10010)),
    'imf_mkgw.yaml': dict(
        dataset='MKG-W', model='imf',
        model_args=dict(hidden_channels=256, relation_channels=256, num_heads=2,
                        label_smoothing=0.1, decision='mean'),
        train=dict(regime='1-n', epochs=1000, batch_size=256, optimizer='adam', lr=5e-4,
                   seed=10010)),
    # MoSE's learn.py (research/baselines.md 2.8): ComplEx rank 2000, alpha 1, scale 20, N3
    # 0.01, Adagrad 0.1, batch 1000, up to 200 epochs, selection on validation Hits@10 with
    # early stopping after 10 validations; no MKG-W script, the same settings
    'mose_db15k.yaml': dict(
        dataset='DB15K', model='mose',
        model_args=dict(hidden_channels=2000, alpha=1.0, scale=20.0,
                        regularization_weight=0.01),
        train=dict(regime='1-n', epochs=200, batch_size=1000, optimizer='adagrad', lr=0.1,
                   eval_every=1, metric='hits@10', patience=10)),
    'mose_mkgw.yaml': dict(
        dataset='MKG-W', model='mose',
        model_args=dict(hidden_channels=2000, alpha=1.0, scale=20.0,
                        regularization_weight=0.01),
        train=dict(regime='1-n', epochs=200, batch_size=1000, optimizer='adagrad', lr=0.1,
                   eval_every=1, metric='hits@10', patience=10)),
    # VISTA's only script, test_FB15K237.sh (research/baselines.md 2.9), for both datasets: d 256,
    # 1/1/1 layers, 64 heads, feed-forward 2048, dropouts 0.1 and 0.8/0.3/0.0, k = 1 image,
    # no label smoothing, Adam 1e-3, batch 512, 750 epochs, gradient clipping 0.1
    **{f'vista_{name}.yaml': dict(
        dataset=dataset, model='vista',
        model_args=dict(hidden_channels=256, num_heads=64, feedforward_channels=2048,
                        num_entity_layers=1, num_relation_layers=1, num_decoder_layers=1,
                        dropout=0.1, structure_dropout=0.8,
                        modality_dropout={'image': 0.3, 'text': 0.0}, max_instances=1,
                        label_smoothing=0.0),
        train=dict(regime='1-n', epochs=750, batch_size=512, lr=1e-3, optimizer='adam',
                   grad_clip=0.1)) for name, dataset in (('db15k', 'DB15K'), ('mkgw', 'MKG-W'))},
    # MyGO's run.sh (anchors 3.6) and train_mygo_fgc.py's defaults (batch 2048, dropout 0.01,
    # 1 entity layer, no label smoothing); FGC temperature 0.5 over 512 entities
    'mygo_db15k.yaml': dict(
        dataset='DB15K', model='mygo',
        model_args=dict(hidden_channels=256, feedforward_channels=1024, num_heads=2,
                        num_entity_layers=1, num_decoder_layers=1, dropout=0.01,
                        structure_dropout=0.6, modality_dropout={'image': 0.3, 'text': 0.1},
                        fgc_weight=1e-2, fgc_temperature=0.5, fgc_entities=512,
                        label_smoothing=0.0),
        train=dict(regime='1-n', epochs=1500, batch_size=2048, lr=1e-3, grad_clip=0.1)),
    'mygo_mkgw.yaml': dict(
        dataset='MKG-W', model='mygo',
        model_args=dict(hidden_channels=256, feedforward_channels=1024, num_heads=4,
                        num_entity_layers=1, num_decoder_layers=2, dropout=0.01,
                        structure_dropout=0.9, modality_dropout={'image': 0.4, 'text': 0.1},
                        fgc_weight=1e-3, fgc_temperature=0.5, fgc_entities=512,
                        label_smoothing=0.0),
        train=dict(regime='1-n', epochs=1500, batch_size=2048, lr=5e-4, grad_clip=0.1)),
    # ours: the defaults of examples/rotate_mkgw.py (checked below)
    'rotate_mkgw.yaml': dict(
        dataset='MKG-W', model='rotate',
        model_args=dict(hidden_channels=250, margin=6.0, adversarial_temperature=1.0),
        train=dict(epochs=1000, max_minutes=15.0, batch_size=1024, lr=1e-3, num_negatives=64,
                   eval_every=5, seed=0)),
    # RSME (research/baselines.md 2.5: wangmengsd/RSME learn.py, config.py): rank 1000, alpha
    # 0.7 constant, beta 0.5, forget gate by MRP, 1-N with reciprocal relations and N3 (reg 0,
    # learn.py's default), Adagrad 0.1, batch 1000, 50 epochs, init 1e-3
    'rsme_db15k.yaml': rsme('DB15K'),
    'rsme_mkgw.yaml': rsme('MKG-W'),
    # OTKGE (research/baselines.md 2.6: Lion-ZS/OTKGE README, models.py OTKGE_fb): rank 500,
    # alpha 0.1 (image), gamma 0.7 (text), scale 300, plan from entities 0-9 with exp(-0.1 C),
    # 1-N, N3 1e-3, Adagrad 0.1, batch 5000, 150 epochs, init 1e-3
    'otkge_db15k.yaml': otkge('DB15K'),
    'otkge_mkgw.yaml': otkge('MKG-W'),
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
    if name in NEEDS_CHECKPOINTS:
        pytest.skip("needs user-supplied pretrained checkpoints: see "
                    "test_checkpoint_config_names_what_is_missing")
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
    if train.mat is not None:
        from torch_mmkg.training import MAT
        MAT(model, **train.mat)  # every MAT key is known
    if train.mmkrl_adversary is not None:
        from torch_mmkg.training import MMKRLAdversary
        MMKRLAdversary(model, **train.mmkrl_adversary)  # every key is known


#: Configs whose model loads pretrained checkpoints the user must supply (no download here).
NEEDS_CHECKPOINTS = ('mkgformer_db15k.yaml', )


@pytest.mark.parametrize('name', NEEDS_CHECKPOINTS)
def test_checkpoint_config_names_what_is_missing(name):
    r"""The config parses, its header says what to supply, and building its model without the
    checkpoints fails with an error naming the missing paths."""
    import torch

    from torch_mmkg.datasets import FakeMMKGDataset
    from torch_mmkg.training import TrainConfig
    path = osp.join(CONFIG_DIR, name)
    cfg = cli.resolve_config(cli.build_parser().parse_args(['train', '--config', path]))
    TrainConfig.from_dict(cfg['train'])
    text = header(name)
    assert 'YOU MUST SUPPLY' in text and 'text_model' in text and 'vision_model' in text
    args = dict(cfg['model_args'])
    assert args['text_model'] is None and args['vision_model'] is None
    data = FakeMMKGDataset(num_entities=12, num_relations=2, num_triples=20,
                           modalities={'image': 3}, seed=0)[0]
    torch.manual_seed(0)
    with pytest.raises(ValueError, match='text_model and vision_model are missing'):
        cli.build_model(cfg, data)
