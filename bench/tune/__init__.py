"""``bench tune``: the same hyperparameter search for every method, on validation data only
(Optuna studies; the search spaces are declared by the methods, :mod:`core.search`)."""
