"""bnopt: reproduce and extend Santurkar et al. 2018, "How Does Batch Normalization Help
Optimization?" (README.md). The Snakemake workflow's science: configuration and its schema
(``config``, package data ``config.schema.yaml``), models and measurements, training, tables,
figures and the scorecard. Modules import what they need; importing the package imports none."""
