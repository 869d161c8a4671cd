"""A registry: the single source of one kind's names (criteria, granularities, metrics, ...).

Torch-free. An entry names its implementation lazily, as "package.module:attribute", imported on
first use; so the spec (and the API that validates it) reads the names without importing torch,
while the engine resolves the implementation. An entry may also be the object itself (a test or
a plugin registering a class it just defined), and a parametrised entry accepts every name its
`parse` function accepts (one "N:M" entry covers "2:4", "1:8", ...).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Entry:
    """One registered name: its implementation (or where to import it from) and facts about it.

    `parse`, for a parametrised entry, takes a concrete name and returns whether it belongs to
    this entry; it raises ValueError for a name of the right form with bad parameters.
    """

    name: str
    target: object
    info: dict[str, Any] = field(default_factory=dict)
    parse: Callable[[str], bool] | None = None


def _import(reference: str) -> object:
    module, _, attribute = reference.partition(":")
    value: object = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


class Registry(Mapping[str, T], Generic[T]):
    """Names of one kind mapped to their implementations, resolved on first lookup.

    Iterating yields the registered names (a parametrised entry yields its display name, for
    example "N:M"); `resolve` and `[]` accept concrete names and import what is needed.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        target: str | T,
        *,
        parse: Callable[[str], bool] | None = None,
        **info: Any,
    ) -> None:
        """Add `name`; `target` is the implementation or its "module:attribute" reference.

        Raises:
            ValueError: `name` is already registered.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name=name, target=target, info=dict(info), parse=parse)

    def unregister(self, name: str) -> None:
        """Remove `name` (tests that register a toy entry remove it afterwards)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """The registered names in registration order (display names for parametrised ones)."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        """The entries in registration order."""
        return tuple(self._entries.values())

    def closed_names(self) -> tuple[str, ...]:
        """The names of the entries that are not parametrised: an enum for a schema."""
        return tuple(name for name, entry in self._entries.items() if entry.parse is None)

    def allowed(self) -> str:
        """The allowed names as a message fragment: "'a', 'b' or 'N:M'"."""
        quoted = [f"{name!r}" for name in self._entries]
        if len(quoted) <= 1:
            return "".join(quoted)
        return f"{', '.join(quoted[:-1])} or {quoted[-1]}"

    def entry(self, name: str) -> Entry:
        """The entry `name` belongs to.

        Raises:
            ValueError: `name` is not registered; the message lists the allowed names (or a
                parametrised entry's own complaint about its parameters).
        """
        found = self._entries.get(name)
        if found is not None and found.parse is None:
            return found
        for candidate in self._entries.values():
            if candidate.parse is not None and candidate.parse(name):
                return candidate
        raise ValueError(f"unknown {self.kind} {name!r}; allowed: {self.allowed()}")

    def check(self, name: str) -> str:
        """Return `name` if it is registered, else raise ValueError naming the allowed ones."""
        self.entry(name)
        return name

    def info(self, name: str) -> dict[str, Any]:
        """The facts registered with `name`'s entry (e.g. a metric's direction)."""
        return self.entry(name).info

    def resolve(self, name: str) -> T:
        """The implementation of `name`, imported on first use."""
        entry = self.entry(name)
        if isinstance(entry.target, str):
            entry.target = _import(entry.target)
        return entry.target  # type: ignore[return-value]

    def __getitem__(self, name: str) -> T:
        try:
            return self.resolve(name)
        except ValueError as error:
            raise KeyError(name) from error

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.entry(name)
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
