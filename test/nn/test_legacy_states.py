r"""State dicts saved before the model layer became a composition (parameters then lived on the
model itself: :obj:`node_emb`, :obj:`projection`, LBMKGC's :obj:`gate`, MoMoK's
:obj:`experts` and :obj:`tucker`, ...) load into today's models, strictly, and give the scores
they gave then."""
import json
import os
import sys

import pytest
import torch

from torch_mmkg.data.serialization import safe_load

sys.path.insert(0, os.path.dirname(__file__))
import legacy_states as legacy  # noqa: E402

DIR = os.path.join(os.path.dirname(__file__), 'data', 'legacy')


@pytest.mark.parametrize('name', legacy.NAMES)
def test_old_state_dict_loads_and_scores_the_same(name):
    with open(os.path.join(DIR, 'scores.json')) as f:
        expected = json.load(f)[name]
    state = safe_load(os.path.join(DIR, f'{name}.pt'))
    assert any(not k.startswith(('representation.', 'interaction.', 'fusion.', 'rel_emb'))
               for k in state)  # written with the old names
    torch.manual_seed(0)  # another initialisation than the saved model's
    model = legacy.build(name)
    before = legacy.scores(model)
    assert before['forward'] != pytest.approx(expected['forward'], abs=1e-6)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    after = legacy.scores(model)
    for key in expected:  # float64, the same operations: equal up to summation order
        assert torch.allclose(torch.tensor(after[key], dtype=torch.float64),
                              torch.tensor(expected[key], dtype=torch.float64),
                              rtol=1e-9, atol=1e-9), key
