r"""State dicts written by torch_mmkg before the model layer became one composition (commit
cc2481d), with the scores they gave, for :mod:`test.nn.test_legacy_states`:
``python test/nn/legacy_states.py OUT_DIR`` under that commit wrote them."""
import json
import os
import sys

import torch

N, R, D = 12, 3, 4
NAMES = ['transe', 'rotate', 'tucker', 'native', 'lbmkgc', 'tbkgc', 'vbkgc', 'momok']
KWARGS = {'lbmkgc': {'alignment_weight': 0.5},
          # the defaults of that time (MoMoK follows its authors' code since issue 15)
          'momok': {'finetune_features': False, 'init': 'library', 'club_pairs': 'per_pair'},
          # VBKGC's TransE terms were not normalised then (the default since issue 15)
          'vbkgc': {'normalize': False}}


def build(name):
    from torch_mmkg.nn import MODELS
    gen = torch.Generator().manual_seed(11)
    kwargs = dict(KWARGS.get(name, {}))
    if name in {'native', 'lbmkgc', 'tbkgc', 'vbkgc', 'momok'}:
        kwargs['features'] = {'image': torch.randn(N, 5, generator=gen),
                              'text': torch.randn(N, 3, generator=gen)}
        kwargs['masks'] = {'image': torch.arange(N) % 3 != 0, 'text': torch.arange(N) % 4 != 1}
    return MODELS[name](N, R, D, **kwargs).double().eval()


def triples():
    gen = torch.Generator().manual_seed(5)
    return (torch.randint(0, N, (6, ), generator=gen), torch.randint(0, R, (6, ), generator=gen),
            torch.randint(0, N, (6, ), generator=gen))


@torch.no_grad()
def scores(model):
    h, r, t = triples()
    return {'forward': model(h, r, t).tolist(), 'tails': model.score_tails(h, r).tolist(),
            'heads': model.score_heads(r, t).tolist()}


if __name__ == '__main__':
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    expected = {}
    for i, name in enumerate(NAMES):
        torch.manual_seed(100 + i)
        model = build(name)
        state = {k: v for k, v in model.state_dict().items() if k != '_extra_state'}
        torch.save(state, os.path.join(out, f'{name}.pt'))
        expected[name] = scores(model)
    with open(os.path.join(out, 'scores.json'), 'w') as f:
        json.dump(expected, f)
