"""Sphinx configuration for the pastset documentation.

Build from the top of the checkout, with pastset and doc/requirements.txt installed:

    python -m sphinx -W --keep-going -b html doc doc/_build/html
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # document this checkout's pastset
sys.path.insert(0, str(HERE / "_ext"))

import pastset  # noqa: E402

project = "pastset"
author = "the pastset maintainers"
copyright = "the pastset maintainers, GPL-2.0-or-later"
version = release = pastset.__version__

# myst-nb renders the tutorial notebook with the outputs stored in it; it brings
# myst-parser along (the Markdown pages are read as before).  nbsphinx, the
# other choice, needs pandoc installed outside Python.
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "pastset_reference",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "requirements.txt", "**.ipynb_checkpoints"]

nb_execution_mode = "off"  # shown as stored; tests/launch/test_local.py runs it in a real kernel
nb_merge_streams = True

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

smartquotes = False  # quotes in commands, messages and settings are typed as shown

html_theme = "alabaster"
html_title = f"pastset {release}"
html_static_path: list[str] = []
