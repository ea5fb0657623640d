"""Sphinx configuration of the documentation site; `make docs` (docs/build.py) stages the sources and runs Sphinx."""
import os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "dmsae"
author = "dmsae developers"
copyright = "2026 onwards, dmsae developers"
root_doc = "index"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax"]   # the source to read is the notebooks

# the staged tree (docs/build.py) mirrors the repository: these files are pages, the README is included in the home
# page, every other file of the repository is there by a link (a relative link to it resolves: image or download)
include_patterns = ["index.md", "CHANGELOG.md", "docs/*.md", "nbs/*.ipynb", "nbs/paper/*.ipynb", "api/*.md",
                    "bench/README.md", "bench/results/*.md"]
exclude_patterns = ["_include/**", "_static_site/**", "**/.ipynb_checkpoints"]
suppress_warnings = ["toc.not_included", "myst.header", "misc.highlighting_failure", "mystnb.unknown_mime_type",
                     "toc.excluded"]

# notebooks: never executed here; outputs are those stored in the staged copy (make test / make reproduce)
nb_execution_mode = "off"
nb_output_stderr = "remove"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "html_image"]
myst_heading_anchors = 4
myst_dmath_double_inline = True

# formulas: MathJax 3 shipped with the site (tools/install.sh fetches it), no CDN
SRC = Path(os.environ.get("DMSAE_DOCS_SRC", ROOT / "_docs" / "src"))
html_static_path = [str(SRC / "_static_site")]
mathjax_path = "mathjax/tex-mml-chtml.js"
mathjax3_config = {"tex": {"tags": "ams"}}

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "description"
autodoc_mock_imports = []

html_theme = "furo"
html_title = "dmsae"
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
html_last_updated_fmt = None
html_show_search_summary = False   # summaries fetch each page, which browsers refuse for file:// (CORS): titles only
autodoc_inherit_docstrings = False


def _plain_docstring(app, what, name, obj, options, lines):
    """The docstrings are plain prose, not reStructuredText: `code` is literal, $tex$ a formula; `|`, `*`, `_` and
    `\\` elsewhere are characters."""
    for i, line in enumerate(lines):
        parts = re.split(r"((?<![`\w])`[^`]+`(?!`)|(?<![\w$])\$[^$\s][^$]*\$(?![\w$]))", line)   # prose, span, ...
        lines[i] = "".join((f"``{p[1:-1]}``\\ " if p[0] == "`" else f":math:`{p[1:-1]}`\\ ") if k % 2 else
                           re.sub(r"([\\|*_])", r"\\\1", p) for k, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", _plain_docstring)
