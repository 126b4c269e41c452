"""A small name -> object registry with did-you-mean errors (after lm-eval's registry)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from core.keys import InvalidKeyError, check_key

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class InvalidNameError(InvalidKeyError):
    """A name that cannot be registered (not a file-name key, or with capitals)."""


class Registry(Generic[T]):
    """Maps canonical names (and aliases) to registered objects.

    ``kind`` is used in error messages ("method", "dataset", ...). Names are file-name keys
    (:func:`core.keys.check_key`: they name result files) in lower case: lookups ignore case,
    so a name with capitals could never be found as written, and is refused when registered.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, *aliases: str, origin: str = "") -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("mtl")`` on a class or function. ``origin`` says
        where it came from (shown by ``bench list``)."""

        for key in (name, *aliases):
            self.check_name(key)

        def decorator(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items or key in self._aliases:
                    raise ValueError(f"{self.kind} name {key!r} is registered twice")
            self._items[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            self._origins[name] = origin
            return obj

        return decorator

    def check_name(self, name: object) -> str:
        """``name`` when it can be registered: a file-name key (:mod:`core.keys`) in lower
        case; :class:`InvalidNameError` saying why and what to use instead otherwise."""
        try:
            check_key(name, f"{self.kind} name")
        except InvalidKeyError as error:
            raise InvalidNameError(f"{error}; a {self.kind} name becomes part of file names"
                                   ) from None
        if name != name.lower():  # type: ignore[union-attr]
            raise InvalidNameError(
                f"{self.kind} name {name!r} has capitals; {self.kind} names are matched "
                f"case-insensitively and stored in lower case: name it "
                f"{name.lower()!r}")  # type: ignore[union-attr]
        return name  # type: ignore[return-value]

    def unregister(self, name: str) -> None:
        """Remove ``name`` (canonical) and its aliases (tests, plugins that are replaced)."""
        del self._items[name]
        self._origins.pop(name, None)
        for alias in self.aliases_of(name):
            del self._aliases[alias]

    def origin(self, name: str) -> str:
        """Where ``name`` came from, as registered (or set by :meth:`set_origin`)."""
        return self._origins.get(self.canonical(name), "")

    def set_origin(self, name: str, origin: str) -> None:
        self._origins[self.canonical(name)] = origin

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` or an alias of it; raises UnknownNameError."""
        key = name.strip().lower()
        if key in self._items:
            return key
        if key in self._aliases:
            return self._aliases[key]
        choices = sorted(self._items)
        close = difflib.get_close_matches(key, choices + sorted(self._aliases), n=1, cutoff=0.5)
        hint = ""
        if close:
            hint = f" Did you mean {self._aliases.get(close[0], close[0])!r}?"
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(choices)}."
        )

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        try:
            self.canonical(str(name))
        except UnknownNameError:
            return False
        return True
