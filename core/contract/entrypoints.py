"""Which modules a user's `pkg.module:factory` may be imported from: one rule for all packages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def entrypoint_allowed(entrypoint: str, prefixes: Sequence[str], *, allow_any: bool) -> bool:
    """Whether the module of `entrypoint` ("pkg.module:factory" or a bare module) may be imported.

    Args:
        entrypoint: "pkg.module:factory", or a module name.
        prefixes: module names; a module is allowed when it is one of them or inside one
            ("pkg" allows "pkg" and "pkg.models", not "pkgevil"). Blank entries are ignored.
        allow_any: True admits every module whatever `prefixes` holds (local runs of one's own
            code). False admits only what `prefixes` names, so an empty `prefixes` admits none.
    """
    if allow_any:
        return True
    module = entrypoint.partition(":")[0]
    for prefix in prefixes:
        prefix = prefix.strip().rstrip(".")
        if prefix and (module == prefix or module.startswith(prefix + ".")):
            return True
    return False


@dataclass(frozen=True)
class EntrypointAllowList:
    """An allow-list of entry-point modules: `prefixes`, or every module when `allow_any`."""

    prefixes: tuple[str, ...] = ()
    allow_any: bool = False

    @classmethod
    def any(cls) -> EntrypointAllowList:
        """Every module (local use: the user runs their own code)."""
        return cls(allow_any=True)

    @classmethod
    def only(cls, prefixes: Iterable[str]) -> EntrypointAllowList:
        """Only the modules under `prefixes`; no prefixes admits no module."""
        return cls(prefixes=tuple(prefixes))

    def allows(self, entrypoint: str) -> bool:
        """Whether `entrypoint`'s module may be imported (see `entrypoint_allowed`)."""
        return entrypoint_allowed(entrypoint, self.prefixes, allow_any=self.allow_any)

    def describe(self) -> str:
        """The allow-list in words, for error messages."""
        if self.allow_any:
            return "any module"
        return ", ".join(self.prefixes) or "none (built-in archs only)"


# The engine's default for local use (`adaprune run`, scripts): the user runs their own code.
ANY_MODULE = EntrypointAllowList(allow_any=True)
