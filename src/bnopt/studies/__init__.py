"""Tools the benchmarks build on, public and documented: per-step costs and a sweep's projection
(``cost``), the naive deep-copying measured step the fast one is tested against (``naive``),
and TF32 emulated on the CPU (``tf32``)."""
