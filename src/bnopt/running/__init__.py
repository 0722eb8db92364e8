"""How a job runs: a rule script's log and end-of-run warnings, the code each rule depends on,
which code made a run, GPU leases, SLURM requests against the nodes, and atomic writes (so a
killed job leaves no output that looks complete)."""
