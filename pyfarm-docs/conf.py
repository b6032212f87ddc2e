"""Sphinx configuration of the PyFarm documentation.

Build from the repository root, warnings as errors::

    sphinx-build -W -b html pyfarm-docs pyfarm-docs/_build/html

Nothing here imports PyFarm or needs the network.
"""

project = "PyFarm"
author = "the PyFarm contributors"
copyright = "the PyFarm contributors"
version = "0.1"
release = "0.1.0"

extensions = ["sphinxcontrib.httpdomain"]

root_doc = "index"
exclude_patterns = ["_build", "requirements.txt"]
highlight_language = "none"
pygments_style = "sphinx"

# sphinxcontrib.httpdomain: the route index lists paths without the
# common prefix.
http_index_shortname = "routes"
http_index_localname = "HTTP routes"
http_index_ignore_prefixes = ["/api/v1"]

html_theme = "alabaster"
html_theme_options = {
    "description": "An open-source render farm manager",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_static_path = []
html_show_sourcelink = False
