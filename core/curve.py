"""curve.png: a run's validation metric and sparsity over its steps, drawn with matplotlib.

The figure shows what a reader needs to judge a run at a glance: the job's name in the title,
the metric against the tolerance band (dense metric minus `max_metric_drop` up to the dense
metric), the measured sparsity against the target line, and the steps the controller rolled
back, marked. The legend sits below the axes so it never hides a point.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.report import PruneResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TARGET_LABEL", "TOLERANCE_LABEL", "curve_figure", "write_curve"]

TOLERANCE_LABEL = "tolerance band"
TARGET_LABEL = "target sparsity"
ROLLBACK_LABEL = "rolled back"
METRIC_COLOR, SPARSITY_COLOR, DENSE_COLOR, ROLLBACK_COLOR = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
)


def curve_figure(
    result: PruneResult, *, name: str, target_sparsity: float | None, max_metric_drop: float
) -> Figure:
    """Build the figure of a run (not saved; see `write_curve`).

    Args:
        result: the run; its steps are the points.
        name: the job's name, shown in the title.
        target_sparsity: the sparsity the spec asked for (None: no target line).
        max_metric_drop: the tolerance; the band spans [dense - drop, dense].

    Returns:
        A matplotlib Figure with one axes for the metric and a twin axes for the sparsity.
    """
    # Figure without pyplot draws with Agg and touches no global backend state.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 4.8), layout="constrained")
    metric_axis = figure.subplots()
    sparsity_axis = metric_axis.twinx()
    steps = [report.step for report in result.steps]
    dense = result.dense_metric
    metric_axis.axhspan(
        dense - max_metric_drop, dense, color=DENSE_COLOR, alpha=0.15, label=TOLERANCE_LABEL
    )
    metric_axis.axhline(dense, color=DENSE_COLOR, linestyle="--", label="dense metric")
    metric_axis.plot(
        steps, [r.metric for r in result.steps], "o-", color=METRIC_COLOR, label="metric"
    )
    rolled_back = [r for r in result.steps if r.decision == "rollback"]
    if rolled_back:
        metric_axis.plot(
            [r.step for r in rolled_back],
            [r.metric for r in rolled_back],
            linestyle="none",
            marker="x",
            markersize=10,
            markeredgewidth=2,
            color=ROLLBACK_COLOR,
            label=ROLLBACK_LABEL,
            zorder=5,
        )
    sparsity_axis.plot(
        steps, [r.sparsity for r in result.steps], "s-", color=SPARSITY_COLOR, label="sparsity"
    )
    if target_sparsity is not None:
        sparsity_axis.axhline(
            target_sparsity, color=SPARSITY_COLOR, linestyle=":", linewidth=1.5, label=TARGET_LABEL
        )
    metric_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric_axis.set_xlabel("step")
    metric_axis.set_ylabel("validation metric")
    sparsity_axis.set_ylabel("sparsity")
    sparsity_axis.set_ylim(0.0, 1.0)
    verdict = "within tolerance" if result.within_tolerance else "past tolerance"
    asked = f" of {target_sparsity:.3f}" if target_sparsity is not None else ""
    figure.suptitle(
        f"{name}: sparsity {result.sparsity:.3f}{asked}, metric {result.metric:.3f} ({verdict})"
    )
    handles, labels = metric_axis.get_legend_handles_labels()
    more_handles, more_labels = sparsity_axis.get_legend_handles_labels()
    # Outside the data: a row of entries under the axes, laid out by the constrained engine.
    figure.legend(handles + more_handles, labels + more_labels, loc="outside lower center", ncols=3)
    return figure


def write_curve(
    path: Path,
    *,
    result: PruneResult,
    name: str,
    target_sparsity: float | None,
    max_metric_drop: float,
) -> None:
    """Draw the run's curve (see `curve_figure`) and save it as a PNG at `path`."""
    figure = curve_figure(
        result, name=name, target_sparsity=target_sparsity, max_metric_drop=max_metric_drop
    )
    figure.savefig(path, dpi=100)
