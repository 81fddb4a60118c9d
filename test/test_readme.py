r"""The README's worked example of "Adding a model" runs as printed: it composes existing
parts into a preset that scores consistently, trains under both regimes and learns."""
import os
import re

import pytest
import torch

from torch_mmkg.data import get_triples
from torch_mmkg.datasets.fake import FakeMMKGDataset
from torch_mmkg.nn import MODELS
from torch_mmkg.testing import assert_scoring_consistent, planted_mrr_gain
from torch_mmkg.training import TrainConfig, Trainer

README = os.path.join(os.path.dirname(__file__), '..', 'README.md')


def example_code() -> str:
    text = open(README, encoding='utf-8').read()
    block = re.search(r'<!-- adding-a-model:start -->\n```python\n(.*?)```\n'
                      r'<!-- adding-a-model:end -->', text, re.S)
    assert block, "the README lost its 'Adding a model' example"
    return block.group(1)


@pytest.fixture
def preset():
    namespace = {}
    exec(compile(example_code(), 'README.md', 'exec'), namespace)
    try:
        yield namespace['IKRLLike']
    finally:
        MODELS.unregister('ikrl_like')


def test_example_is_short():
    lines = [line for line in example_code().splitlines() if line.strip()]
    assert len(lines) < 40


def test_example_preset_works_end_to_end(preset, single_thread):
    assert MODELS['IKRL-like'] is preset  # registered, any case
    data = FakeMMKGDataset(num_entities=40, num_relations=2, num_clusters=4, num_triples=240,
                           modalities={'image': 6, 'text': 5}, missing_rate=0.3, seed=1)[0]
    torch.manual_seed(0)
    model = preset.from_data(data, 8).double()
    h, r, t = get_triples(data, 'train')
    assert_scoring_consistent(model, h[:30], r[:30], t[:30], atol=1e-9)
    assert model.supports_twins  # unimodal and cross-modal terms
    for regime in ('negative_sampling', '1-n'):
        torch.manual_seed(0)
        m = preset.from_data(data, 8)
        res = Trainer(m, data, TrainConfig(epochs=1, eval_every=1, batch_size=64,
                                           num_negatives=4, regime=regime, progress=False,
                                           test=False)).fit()
        assert res['history'][0]['loss'] > 0
    data = FakeMMKGDataset(num_entities=60, num_relations=3, num_clusters=4, num_triples=600,
                           modalities={'image': 8, 'text': 6}, seed=1)[0]
    torch.manual_seed(0)
    before, after = planted_mrr_gain(preset.from_data(data, 8, margin=1.0), data, epochs=30,
                                     lr=0.02)
    assert after > before + 0.1, (before, after)


def readme_commands():
    r"""Every command line of the README's code blocks that calls the torch_mmkg command
    (continuation lines joined, comments dropped), except lines abbreviated with '...'."""
    import shlex
    text = open(README, encoding='utf-8').read()
    out = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = line.split('  #')[0].strip()
            for prefix in ('torch-mmkg ', 'python -m torch_mmkg '):
                if line.startswith(prefix) and '...' not in line:
                    out.append(shlex.split(line[len(prefix):]))
    return out


def test_readme_commands_parse():
    # The README's command lines use commands and flags that exist, with values of the right
    # type: the reference cannot drift from the parser.
    from torch_mmkg import cli
    commands = readme_commands()
    assert len(commands) >= 8
    parser = cli.build_parser()
    seen = set()
    for argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"README command does not parse: torch-mmkg {' '.join(argv)}")
        seen.add(args.command)
    assert {'train', 'evaluate', 'predict', 'list', 'tune'} <= seen
