"""A one-shot run's settings, read from the job spec or given directly, and the parts they build."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.oneshot.allocation import OwlAllocation, UniformAllocation
from core.oneshot.methods import LayerTarget, OneShotMethod
from core.oneshot.selection import Group
from core.registries import ALLOCATIONS, ONESHOT_METHODS, parse_nm
from core.spec import PruneSpec

Allocation = UniformAllocation | OwlAllocation


@dataclass(frozen=True)
class OneShotConfig:
    """Method, target and allocation of a one-shot run (the spec's `prune` fields of that name).

    `granularity` is "unstructured" or an N:M pattern such as "2:4"; `comparison_group` None
    means the method's own default (per layer for magnitude, per row for Wanda).
    """

    method: str
    target_sparsity: float
    granularity: str = "unstructured"
    allocation: str = "uniform"
    comparison_group: Group | None = None
    sparsegpt_block_size: int = 128
    sparsegpt_dampening: float = 0.01
    owl_threshold: float = 5.0
    owl_lambda: float = 0.08

    def __post_init__(self) -> None:
        ONESHOT_METHODS.check(self.method)
        ALLOCATIONS.check(self.allocation)
        if not 0.0 < self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
        nm = self.nm
        if self.granularity != "unstructured" and nm is None:
            raise ValueError(
                f"one-shot pruning takes 'unstructured' or an N:M granularity, "
                f"not {self.granularity!r}"
            )
        if nm is not None and not ALLOCATIONS.info(self.allocation)["nm"]:
            raise ValueError(f"allocation {self.allocation!r} cannot vary an N:M pattern")

    @classmethod
    def from_spec(cls, prune: PruneSpec) -> OneShotConfig:
        """The settings of a spec whose `prune.method` is set."""
        if prune.method is None:
            raise ValueError("prune.method is not set: the spec asks for the iterative loop")
        return cls(
            method=prune.method,
            target_sparsity=prune.target,
            granularity=prune.granularity,
            allocation=prune.allocation,
            comparison_group=prune.comparison_group,
            sparsegpt_block_size=prune.sparsegpt_block_size,
            sparsegpt_dampening=prune.sparsegpt_dampening,
            owl_threshold=prune.owl_threshold,
            owl_lambda=prune.owl_lambda,
        )

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_nm(self.granularity)

    def target(self, sparsity: float) -> LayerTarget:
        """What each layer of a block at `sparsity` is pruned to."""
        return LayerTarget(sparsity=sparsity, nm=self.nm, group=self.comparison_group)

    def build_method(self) -> OneShotMethod:
        """The method object (its registry entry, built with this config's settings)."""
        method: OneShotMethod = ONESHOT_METHODS.resolve(self.method).from_config(self)
        return method

    def build_allocation(self) -> Allocation:
        allocation: Allocation = ALLOCATIONS.resolve(self.allocation).from_config(self)
        return allocation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
