"""From finished runs to numbers: reading runs' tables and the sweep's summary, whether a run
trained, and training-loss bins (where two runs stand at the same training loss). No torch, no
matplotlib."""
