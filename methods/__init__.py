"""Method registry: ``METHODS.get("mtl")`` returns the class; ``@register_method("mtl")``.

A bad name raises :class:`bench.registry.UnknownNameError` listing the valid names.
"""
from __future__ import annotations

from bench.registry import Registry

METHODS: Registry[type] = Registry("method")


def register_method(name: str, *aliases: str):
    """Class decorator registering a :class:`methods.base.FewShotMethod` subclass."""

    def decorator(cls):
        cls.name = name
        return METHODS.register(name, *aliases)(cls)

    return decorator


# Importing the modules registers them.
from methods import mtl as _mtl  # noqa: E402,F401
from methods import maml as _maml  # noqa: E402,F401
from methods import anil as _anil  # noqa: E402,F401
from methods import r2d2 as _r2d2  # noqa: E402,F401
from methods import metaoptnet as _metaoptnet  # noqa: E402,F401
from methods import protonet as _protonet  # noqa: E402,F401
from methods import imaml as _imaml  # noqa: E402,F401
from methods import minibatchprox as _minibatchprox  # noqa: E402,F401
