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

    for key in (name, *aliases):  # a file-name key in lower case (core.keys), or an error
        METHODS.check_name(key)

    def decorator(cls):
        from methods.base import AUGMENTATION_POLICIES, TRAINING_BATCHES
        from methods.taxonomy import check_table1

        cls.name = name
        own = vars(cls)
        if "display_name" not in own:
            cls.display_name = name
        for fact in ("efficiency_reference", "comparison_baseline"):
            if fact not in own:
                setattr(cls, fact, False)
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


def _the_one_declaring(fact: str) -> type:
    found = [METHODS.get(n) for n in METHODS.names() if getattr(METHODS.get(n), fact)]
    if len(found) != 1:
        raise LookupError(f"exactly one method must declare {fact} = True; "
                          f"found {[cls.name for cls in found] or 'none'}")
    return found[0]


def efficiency_reference() -> type:
    """The registered method the paper's speed-ups are relative to (the one class that
    declares ``efficiency_reference = True``)."""
    return _the_one_declaring("efficiency_reference")


def comparison_baseline() -> type:
    """The registered method the others are compared with episode by episode by default
    (``bench table``'s paired comparisons, ``bench table --brief``; the one class that declares
    ``comparison_baseline = True``)."""
    return _the_one_declaring("comparison_baseline")


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
