"""The figures: the paper's and ours (``paper``), activation statistics (``activations``), the
earlier experiments' (``earlier``), the scorecard at a glance (``scorecard``), and the house
style they share (``style``)."""
