"""bnopt: reproduce and extend Santurkar et al. 2018, "How Does Batch Normalization Help
Optimization?" (README.md). The Snakemake workflow's science, in subpackages by concern
(docs/development.md, "Layout"). Importing the package imports none of them."""

# The subpackages from the bottom up: a module imports from its own subpackage and those before
# it, never from one after it, and no imports form a cycle (tests/test_layers.py).
LAYERS = ("plan", "analysis", "scorecard", "running", "training", "figures", "studies")
# Those that import neither torch nor matplotlib: parsing the workflow imports them.
LIGHT = ("plan", "analysis", "scorecard")
