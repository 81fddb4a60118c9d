r"""Sphinx configuration of the torch_mmkg API reference.

Build it (warnings are errors, as in CI)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages list the public names of each package (its ``__all__``); ``test/test_docs.py`` checks
that no name is missing. ``autosummary`` writes one stub page per name into ``docs/generated/``.
"""
import datetime
import os.path as osp
import sys

try:  # an installed (or editable) torch_mmkg first; a bare checkout otherwise
    import torch_mmkg
except ImportError:  # pragma: no cover
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
    import torch_mmkg

project = 'torch_mmkg'
author = 'torch_mmkg developers'
copyright = f'{datetime.date.today().year}, {author}'
version = release = torch_mmkg.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
]

templates_path = ['_templates']
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_theme_options = {'description': 'Multi-modal knowledge graph completion for PyG',
                      'fixed_sidebar': True}

# One stub page per public name, from the autosummary tables of the package pages.
autosummary_generate = True
autodoc_member_order = 'bysource'
autodoc_default_options = {'show-inheritance': True}
# The docstrings give the types in Args; the signature keeps the defaults readable.
autodoc_typehints = 'none'

# Google-style docstrings (PyG's style): Args, Returns, Raises, Example, Shapes, ...
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as fields, so that they do not clash with the members autodoc documents.
napoleon_use_ivar = True
# PyG's "Shapes:" section (a list of input and output shapes).
napoleon_custom_sections = ['Shapes']
