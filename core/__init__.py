"""The neutral layer: what ``methods``, ``datasets`` and ``bench`` all build on.

Arrows point down only: ``bench`` imports ``methods``, ``datasets`` and ``core``; ``methods``
imports ``datasets`` (episode types) and ``core``; ``core`` imports none of them.

- :mod:`core.registry`: name -> object registries with did-you-mean errors;
- :mod:`core.atomic`: the one atomic file write (every file the project writes goes through it);
- :mod:`core.hparams`: declared hyperparameters and their one validation;
- :mod:`core.budget`: :class:`~core.budget.TrainBudget`, how a run is trained.
"""
