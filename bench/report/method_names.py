"""How tables name a result's method: its declared display name, or its recorded name when its
class is not available here (files from elsewhere never import code)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from methods import METHODS
from methods.plugins import MethodImportError, import_allowed, method_class


def display_name(config: dict[str, Any]) -> str:
    """The declared ``display_name`` of a result's method: registered here, or imported from
    the run's ``method_source`` where the user allowed it (:func:`methods.plugins.
    allow_imports`); its recorded name otherwise (:func:`recorded_import_notes` says why)."""
    method = config["method"]
    if method not in METHODS and config.get("method_source"):
        try:
            method_class(method, config["method_source"])
        except (MethodImportError, ValueError, KeyError):
            pass
    return METHODS.get(method).display_name if method in METHODS else method


def recorded_import_notes(configs: list[dict[str, Any]]) -> list[str]:
    """One line per (method, import path) recorded in ``configs`` whose method is shown under
    its recorded name because the path was not imported (files never import code)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for config in configs:
        method, source = config.get("method"), config.get("method_source")
        if isinstance(source, str) and method not in METHODS and not import_allowed(source):
            counts[(str(method), source)] += 1
    return [f"note: {n} file(s) of method {method!r} are shown under its recorded name; its "
            f"import path {source!r} was not imported (a file's contents never import code): "
            f"pass --allow-import or --methods {source} to use the method's own facts"
            for (method, source), n in sorted(counts.items())]
