"""Methods from outside this repository: by import path or by entry point.

A method is one :class:`~methods.base.FewShotMethod` subclass in a file of your own; no file
of this repository changes. Two ways to make it known:

- **import path** ``package.module:Class`` wherever a method name is accepted
  (``bench run --methods mypkg.mymethods:CosineProto``); the module must be importable (its
  folder on ``PYTHONPATH``, or the package installed). The class is registered under the name
  its ``@register_method`` gives it, else its class name in lower case. The import path is
  recorded in the run's configuration (``method_source``), so the processes that rebuild the
  method (``--isolate`` children, Slurm jobs, a results table) import it again;
- **entry point** in the group :data:`ENTRY_POINT_GROUP` of an installed package, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."bridgebench.methods"]
      cosine-proto = "mypkg.mymethods:CosineProto"

  Every installed entry point is registered when :mod:`methods` is imported, under the entry
  point's name (unless the class registers itself), in every process; a broken one is skipped
  with a warning.

``bench list`` shows where each method came from (:meth:`core.registry.Registry.origin`).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from typing import Any

from methods import METHODS, register_method

__all__ = ["ENTRY_POINT_GROUP", "MethodImportError", "import_method", "load_entry_points",
           "method_class", "resolve_method"]

ENTRY_POINT_GROUP = "bridgebench.methods"


class MethodImportError(ValueError):
    """A method's import path or entry point cannot give a method; the message says why."""


def _check_method(obj: Any, where: str) -> type:
    from methods.base import FewShotMethod

    if not (isinstance(obj, type) and issubclass(obj, FewShotMethod)):
        raise MethodImportError(f"{where} is {obj!r}, not a subclass of "
                                "methods.base.FewShotMethod")
    return obj


def _register(cls: type, name: str) -> None:
    """Register ``cls`` under ``name`` unless it registered itself (``@register_method``)."""
    own = vars(cls).get("name")
    if own and own in METHODS and METHODS.get(own) is cls:
        return
    register_method(name)(cls)


def import_method(spec: str) -> type:
    """Import, register and return the method at ``spec`` (``package.module:Class``)."""
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise MethodImportError(f"{spec!r} is neither a registered method nor an import path "
                                "'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MethodImportError(f"cannot import module {module_name!r} of method {spec!r} "
                                f"({exc}); is its folder on PYTHONPATH, or its package "
                                "installed?") from exc
    obj: Any = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise MethodImportError(f"module {module_name!r} has no {qualname!r} (method "
                                    f"{spec!r})")
        obj = getattr(obj, part)
    cls = _check_method(obj, spec)
    _register(cls, vars(cls).get("name") or cls.__name__.lower())
    METHODS.set_origin(cls.name, f"import path {spec}")
    return cls


def load_entry_points() -> list[str]:
    """Register the methods of every installed entry point of :data:`ENTRY_POINT_GROUP`;
    returns their names. One that cannot be loaded is skipped with a warning."""
    names = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = _check_method(entry.load(), f"entry point {entry.name} = {entry.value}")
            _register(cls, entry.name)
        except Exception as exc:  # a broken plugin must not break the harness
            warnings.warn(f"bridgebench: method entry point {entry.name!r} = {entry.value!r} "
                          f"skipped ({type(exc).__name__}: {exc})", stacklevel=2)
            continue
        dist = entry.dist
        package = f" of {dist.metadata['Name']} {dist.version}" if dist is not None else ""
        METHODS.set_origin(cls.name, f"entry point {entry.name}{package}")
        names.append(cls.name)
    return names


def resolve_method(name_or_spec: str) -> tuple[str, str | None]:
    """``(registered name, import path or None)`` of a method given by name (or alias) or by
    import path; unknown names raise :class:`core.registry.UnknownNameError`."""
    text = name_or_spec.strip()
    if ":" in text:
        return import_method(text).name, text
    return METHODS.canonical(text), None


def method_class(name: str, source: str | None = None) -> type:
    """The class of method ``name``; ``source`` (a run's ``method_source``) is imported first
    when given, so a process that has not seen the method yet can rebuild it."""
    if source:
        import_method(source)
    elif ":" in name:
        return import_method(name)
    return METHODS.get(name)
