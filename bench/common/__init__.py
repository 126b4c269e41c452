"""What every area shares and what a run *is* before it runs: its settings, budgets and identity
(:mod:`~bench.common.config`), the precision policy, which runs answer the same question
(cells), the confidence intervals, the class split a result names, and its provenance. Imports
no other area of ``bench``."""
