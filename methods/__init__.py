"""Method registry: ``METHODS.get("mtl")`` returns the class; ``@register_method("mtl")``.

A bad name raises :class:`core.registry.UnknownNameError` listing the valid names. Besides the
built-in methods, the registry holds every method that an installed package declares in the
entry-point group ``bridgebench.methods`` (loaded when this package is imported), and any
method imported by its path, ``package.module:Class`` (:mod:`methods.plugins`).
"""
from __future__ import annotations

from core.registry import Registry

METHODS: Registry[type] = Registry("method")


def register_method(name: str, *aliases: str):
    """Class decorator registering a :class:`methods.base.FewShotMethod` subclass.

    Checks the class's declarations (its quick-budget hyperparameters against its
    ``hparam_spec``, its augmentation policy, its training batches, its Table 1 cell) so a
    mistake fails at import, not mid-sweep.
    """

    def decorator(cls):
        from methods.base import AUGMENTATION_POLICIES, TRAINING_BATCHES
        from methods.taxonomy import check_table1

        cls.name = name
        own = vars(cls)
        if "display_name" not in own:
            cls.display_name = name
        if "efficiency_reference" not in own:
            cls.efficiency_reference = False
        if "comparison_baseline" not in own:
            cls.comparison_baseline = False
        if "reported_as" not in own:
            cls.reported_as = {}
        if cls.augmentation not in AUGMENTATION_POLICIES:
            raise ValueError(f"method {name!r}: augmentation must be one of "
                             f"{', '.join(AUGMENTATION_POLICIES)}, not {cls.augmentation!r}")
        if cls.training_batches not in TRAINING_BATCHES:
            raise ValueError(f"method {name!r}: training_batches must be one of "
                             f"{', '.join(TRAINING_BATCHES)}, not {cls.training_batches!r}")
        check_table1(f"method {name!r}", cls.table1)
        cls.resolve_hparams(cls.quick_hparams)
        module = cls.__module__
        origin = "built in" if module.startswith(f"{__name__}.") else f"module {module}"
        return METHODS.register(name, *aliases, origin=origin)(cls)

    return decorator


def efficiency_reference() -> type:
    """The registered method the paper's speed-ups are relative to (the one class that
    declares ``efficiency_reference = True``)."""
    found = [METHODS.get(n) for n in METHODS.names() if METHODS.get(n).efficiency_reference]
    if len(found) != 1:
        raise LookupError(f"exactly one method must declare efficiency_reference = True; "
                          f"found {[cls.name for cls in found] or 'none'}")
    return found[0]


def comparison_baseline() -> type:
    """The registered method that ``bench table``'s paired comparisons are against by default
    (the one class that declares ``comparison_baseline = True``)."""
    found = [METHODS.get(n) for n in METHODS.names() if METHODS.get(n).comparison_baseline]
    if len(found) != 1:
        raise LookupError(f"exactly one method must declare comparison_baseline = True; "
                          f"found {[cls.name for cls in found] or 'none'}")
    return found[0]


# Importing the modules registers them.
from methods import mtl as _mtl  # noqa: E402,F401
from methods import maml as _maml  # noqa: E402,F401
from methods import anil as _anil  # noqa: E402,F401
from methods import r2d2 as _r2d2  # noqa: E402,F401
from methods import metaoptnet as _metaoptnet  # noqa: E402,F401
from methods import protonet as _protonet  # noqa: E402,F401
from methods import imaml as _imaml  # noqa: E402,F401
from methods import minibatchprox as _minibatchprox  # noqa: E402,F401
from methods import rfs as _rfs  # noqa: E402,F401

# Then the methods installed packages declare (entry-point group bridgebench.methods).
from methods.plugins import load_entry_points  # noqa: E402

load_entry_points()
