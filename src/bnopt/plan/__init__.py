"""What a config asks for, before anything runs: the config's schema and its check, every run's
complete settings (the run plan), the registries of variants, models, datasets, tables and
figures, and the earlier experiments' published findings. No torch, no matplotlib: parsing the
workflow imports it."""
