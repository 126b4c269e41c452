"""Tables and figures from finished results: accuracy and efficiency (``bench table``), paired
comparisons and time to accuracy, the L2 table, tuning cost, ``--brief``'s summary, figures and
the HTML report. Reads results through :mod:`bench.store`; never imports :mod:`bench.run` or
:mod:`bench.sweep`."""
