"""A small name -> object registry with did-you-mean errors (after lm-eval's registry)."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps canonical names (and aliases) to registered objects.

    ``kind`` is used in error messages ("method", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, *aliases: str, origin: str = "") -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("mtl")`` on a class or function. ``origin`` says
        where it came from (shown by ``bench list``)."""

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
