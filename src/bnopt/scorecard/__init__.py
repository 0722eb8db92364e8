"""Each claim of the paper judged from the runs: the checks as data, the values they compare,
the verdict rules, claims.md, and the earlier experiments' findings against ours
(reported.csv). No torch, no matplotlib."""
