"""One run, with torch: datasets on the device, the networks and the normalisers their
variants use, the objective, precision switches, the measurements (probes, ICS, activation
statistics, curvature), one step (plain, CUDA-graphed, measured), what a run records, and the
loop with its checkpoints."""
