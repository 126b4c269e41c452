"""File-name keys: every name the harness writes or reads inside a results folder is one.

Files from elsewhere (result, eval and model files) are data: the name a file records for
itself (its ``key``, its method's or dataset's name) is never used as a path until it has
passed :func:`check_key`, and every path built from keys is checked to lie inside its folder
(:func:`path_inside`). A registered method's or dataset's name is checked with the same rule
when it is registered (:class:`core.registry.Registry`), so a plugin cannot name itself
``../x``.

A key is 1 to :data:`MAX_KEY_LENGTH` characters of letters, digits, ``_``, ``-`` and ``.``,
not starting with a dot: no path separators, no ``..``, no hidden files, nothing a shell or a
file system reads specially. The length leaves room for the longest suffix the harness adds
(an atomic write's ``.<name>.<32 hex digits>.tmp``) within the common 255-byte limit.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["KEY_PATTERN", "MAX_KEY_LENGTH", "InvalidKeyError", "check_key", "is_key",
           "path_inside"]

MAX_KEY_LENGTH = 200
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
"""Letters, digits, ``_``, ``-`` and ``.``; not starting with a dot (ASCII only)."""
_RULE = "letters, digits, '_', '-' and '.' only, not starting with a dot"


class InvalidKeyError(ValueError):
    """A name that cannot be a file-name key, or a path that would leave its folder; the
    message says which, where it came from and the rule."""


def is_key(text: object) -> bool:
    """Whether ``text`` is a valid key (:data:`KEY_PATTERN`, at most :data:`MAX_KEY_LENGTH`)."""
    return (isinstance(text, str) and len(text) <= MAX_KEY_LENGTH
            and KEY_PATTERN.fullmatch(text) is not None)


def check_key(text: object, what: str = "key") -> str:
    """``text`` when it is a valid key, else :class:`InvalidKeyError` naming ``what`` (e.g.
    ``"run key recorded in results/models/x.pt"``) and the rule."""
    if is_key(text):
        return text  # type: ignore[return-value]
    if not isinstance(text, str):
        raise InvalidKeyError(f"{what} must be a string, not {type(text).__name__}")
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{what} is {len(text)} characters long; at most "
                              f"{MAX_KEY_LENGTH} are allowed")
    shown = text if len(text) <= 60 else text[:57] + "..."
    raise InvalidKeyError(f"{what} {shown!r} is not a valid name: {_RULE}")


def path_inside(folder: Path | str, *parts: str) -> Path:
    """``folder`` joined with ``parts``, after checking that the result lies inside ``folder``
    (compared as absolute, normalised paths; symbolic links the user made, say ``runs/`` on
    another disk, are left alone); :class:`InvalidKeyError` otherwise. The last part is a
    file name (a key and its suffix), the others sub-folders the harness names."""
    base = Path(folder)
    path = base.joinpath(*parts)
    root = os.path.abspath(base)
    absolute = os.path.abspath(path)
    if absolute == root or os.path.commonpath([root, absolute]) != root:
        raise InvalidKeyError(f"{path} would lie outside {base} (it is {absolute}); file "
                              "names are built from validated keys only")
    return path
