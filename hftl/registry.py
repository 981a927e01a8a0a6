"""A name -> plug-in registry: how `--strategy` and `--adaptation` find their files' classes."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins by name, in registration order.

    Args:
        what: what a plug-in is, for messages ("strategy", "adaptation method").
        reserved: names no plug-in may take (e.g. "none").

    Example:
        >>> things = Registry("thing")
        >>> things.add("a", 1); things.get("a"), things.names()
        (1, ('a',))
    """

    def __init__(self, what: str, reserved: tuple[str, ...] = ()):
        self.what = what
        self.reserved = reserved
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Raises: ValueError when `name` is taken or reserved."""
        if name in self._entries or name in self.reserved:
            raise ValueError(f"a {self.what} named {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """Raises: KeyError for an unknown name (the message lists the registered ones)."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.what} {name!r}; registered: {sorted(self._entries)}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)
