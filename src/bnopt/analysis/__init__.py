"""From finished runs to numbers: reading runs' tables and the sweep's summary, whether a run
trained, a run's quantities at levels of the training loss (where two runs stand at the same
loss), and the loader for one's own analysis (results). No torch, no matplotlib."""
