r"""The models' behaviour is preserved across refactorings: seeded training losses and scores
on a small graph equal the reference recorded by ``test/nn/reference_losses.py``."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import reference_losses as ref  # noqa: E402


@pytest.mark.parametrize('name,kwargs,twins', ref.CASES, ids=[c[0] for c in ref.CASES])
def test_losses_and_scores_equal_the_reference(name, kwargs, twins, single_thread):
    with open(ref.PATH) as f:
        expected = json.load(f)[name]
    got = ref.losses(name, kwargs, twins)
    # float64 throughout: 1e-9 relative covers summation order of other BLAS/CPUs, and any
    # change of the computation (a term, an initialisation, a mask) moves these far more.
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
