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

**Files are data, never code.** An import path given by the user (the command line's
``--methods``, :func:`import_method`) is imported; one *recorded in a file* (a result's, a
model's or a checkpoint's ``method_source``) is imported only when the user allowed it
(:func:`allow_imports`: ``--allow-import``, or the same path given again with ``--methods``;
``load_model(..., allow_import=True)``); otherwise :func:`method_class` raises
:class:`RecordedImportRefused` and the caller shows the recorded name or refuses the work,
saying what to pass. The processes a sweep starts itself (``--isolate`` and ``--jobs``
children, Slurm jobs) allow the import path of the run they were given by their parent.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
import warnings
from typing import Any, Iterable

from methods import METHODS, register_method

__all__ = ["ENTRY_POINT_GROUP", "MethodImportError", "RecordedImportRefused", "allow_imports",
           "allow_from_arguments", "import_allowed", "import_method", "load_entry_points", "method_class",
           "resolve_method"]

ENTRY_POINT_GROUP = "bridgebench.methods"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
"""An absolute module path or a qualified class name (no relative imports)."""
ALLOW_HINT = ("pass --allow-import to import it, or give that import path with --methods "
              "(Python: load_model(..., allow_import=True))")


class MethodImportError(ValueError):
    """A method's import path or entry point cannot give a method; the message says why."""


class RecordedImportRefused(MethodImportError):
    """A method known here only by an import path recorded in a file, which was not imported
    because the user did not allow it (:func:`allow_imports`)."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        super().__init__(f"method {name!r} was recorded with the import path {source!r}, "
                         "which is not imported from a file's contents; " + ALLOW_HINT)


_allowed: set[str] = set()
_allow_all = False


def allow_imports(specs: Iterable[str] = (), everything: bool = False) -> None:
    """Let :func:`method_class` import these recorded import paths (``everything``: any
    recorded path, ``--allow-import``). Paths given to :func:`import_method` are allowed
    already."""
    global _allow_all
    _allowed.update(s.strip() for s in specs)
    _allow_all = _allow_all or everything


def import_allowed(source: str) -> bool:
    """Whether the recorded import path ``source`` may be imported in this process."""
    return _allow_all or source.strip() in _allowed


def allow_from_arguments(allow_import: bool, specs: Iterable[str]) -> list[str]:
    """The command line's ``--allow-import`` and ``--methods SPEC,...`` (``bench table``,
    ``bench eval``): import each ``SPEC`` now (a :class:`MethodImportError` naming it, before
    any work, when it cannot give a method) and allow recorded import paths accordingly;
    returns the registered names."""
    allow_imports(everything=allow_import)
    return [resolve_method(spec)[0] for spec in specs]


def reset_import_policy() -> None:
    """Forget every allowance (tests)."""
    global _allow_all
    _allowed.clear()
    _allow_all = False


def _check_method(obj: Any, where: str) -> type:
    from methods.base import FewShotMethod

    if not (isinstance(obj, type) and issubclass(obj, FewShotMethod)):
        raise MethodImportError(f"{where} is {obj!r}, not a subclass of "
                                "methods.base.FewShotMethod")
    if obj.loss is FewShotMethod.loss:
        raise MethodImportError(f"{where} is {obj.__module__}.{obj.__qualname__}, which does "
                                "not implement loss() (an abstract base, not a method)")
    return obj


def _register(cls: type, name: str, where: str) -> None:
    """Register ``cls`` under ``name`` unless it registered itself (``@register_method``);
    a name that cannot be registered is a :class:`MethodImportError` naming ``where``."""
    own = vars(cls).get("name")
    if own and own in METHODS and METHODS.get(own) is cls:
        return
    try:
        register_method(name)(cls)
    except ValueError as error:
        raise MethodImportError(f"{where}: {error}") from None


def import_method(spec: str) -> type:
    """Import, register and return the method at ``spec`` (``package.module:Class``), given
    by the user. Whatever goes wrong (a bad path, an import that raises or exits, a class that
    is not a method, a name that cannot be registered) is a :class:`MethodImportError`
    naming ``spec`` and the reason."""
    spec = spec.strip()
    module_name, _, qualname = spec.partition(":")
    if not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(qualname):
        raise MethodImportError(f"{spec!r} is neither a registered method nor an import path "
                                "'package.module:Class' (absolute module path, class name)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MethodImportError(f"cannot import module {module_name!r} of method {spec!r} "
                                f"({exc}); is its folder on PYTHONPATH, or its package "
                                "installed?") from exc
    except SystemExit as exc:  # a module that calls sys.exit() at import
        raise MethodImportError(f"importing module {module_name!r} of method {spec!r} called "
                                f"sys.exit({exc.code!r})") from None
    except Exception as exc:  # the module's own code raised
        raise MethodImportError(f"importing module {module_name!r} of method {spec!r} raised "
                                f"{type(exc).__name__}: {_first_line(exc)}") from exc
    obj: Any = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise MethodImportError(f"module {module_name!r} has no {qualname!r} (method "
                                    f"{spec!r})")
        obj = getattr(obj, part)
    cls = _check_method(obj, spec)
    _register(cls, vars(cls).get("name") or cls.__name__.lower(), spec)
    METHODS.set_origin(cls.name, f"import path {spec}")
    _allowed.add(spec)
    return cls


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def load_entry_points() -> list[str]:
    """Register the methods of every installed entry point of :data:`ENTRY_POINT_GROUP`;
    returns their names. One that cannot be loaded is skipped with a warning."""
    names = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {entry.name} = {entry.value}"
        try:
            cls = _check_method(entry.load(), where)
            _register(cls, entry.name, where)
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
    """The class of method ``name``; ``source`` (a run's recorded ``method_source``) is
    imported first when the user allowed it (:func:`allow_imports`), so a process that has
    not seen the method yet can rebuild it; otherwise :class:`RecordedImportRefused` (a
    file's contents never import a module)."""
    if source:
        if not import_allowed(source):
            raise RecordedImportRefused(name, source)
        import_method(source)
    elif ":" in name:
        return import_method(name)
    return METHODS.get(name)
