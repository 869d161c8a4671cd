"""curve.png: the figure's title, target line, tolerance band, rollback marks and legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from core.curve import ROLLBACK_LABEL, TARGET_LABEL, TOLERANCE_LABEL, curve_figure, write_curve
from core.report import PruneResult, StepReport

DENSE, DROP, TARGET = 0.9, 0.02, 0.7


def _result() -> PruneResult:
    steps = [
        StepReport(
            step=0,
            target_sparsity=0.0,
            sparsity=0.0,
            metric=DENSE,
            loss=0.7,
            decision="baseline",
            seconds=0.01,
            epochs=0,
        ),
        StepReport(
            step=1,
            target_sparsity=0.4,
            sparsity=0.4,
            metric=0.895,
            loss=0.6,
            decision="accelerate",
            seconds=0.02,
            epochs=1,
        ),
        StepReport(
            step=2,
            target_sparsity=0.7,
            sparsity=0.7,
            metric=0.80,
            loss=0.9,
            decision="rollback",
            seconds=0.03,
            epochs=1,
        ),
        StepReport(
            step=3,
            target_sparsity=0.55,
            sparsity=0.55,
            metric=0.89,
            loss=0.65,
            decision="keep",
            seconds=0.03,
            epochs=1,
        ),
    ]
    return PruneResult(
        criterion="magnitude",
        dense_metric=DENSE,
        metric=0.89,
        sparsity=0.55,
        best_sparsity_within_tolerance=0.55,
        within_tolerance=True,
        stop_reason="no_headroom",
        epochs=3,
        seconds=0.09,
        steps=steps,
    )


def _labelled(artists: list[object], label: str) -> list[object]:
    return [a for a in artists if getattr(a, "get_label", lambda: None)() == label]


def test_figure_has_title_target_line_band_and_rollback_marks() -> None:
    figure = curve_figure(
        _result(), name="mnist1d-cnn-70", target_sparsity=TARGET, max_metric_drop=DROP
    )
    assert figure.get_suptitle().startswith("mnist1d-cnn-70:")
    assert "of 0.700" in figure.get_suptitle()
    metric_axis, sparsity_axis = figure.axes

    (target,) = _labelled(list(sparsity_axis.lines), TARGET_LABEL)
    assert isinstance(target, Line2D)
    assert np.allclose(np.asarray(target.get_ydata(), dtype=float), TARGET)

    (band,) = _labelled(list(metric_axis.patches), TOLERANCE_LABEL)
    assert isinstance(band, Rectangle)
    low, high = sorted(band.get_bbox().get_points()[:, 1])
    assert np.isclose(low, DENSE - DROP) and np.isclose(high, DENSE)

    (marks,) = _labelled(list(metric_axis.lines), ROLLBACK_LABEL)
    assert isinstance(marks, Line2D)
    assert list(marks.get_xdata()) == [2] and list(marks.get_ydata()) == [0.80]


def test_legend_sits_outside_the_axes() -> None:
    figure = curve_figure(_result(), name="job", target_sparsity=TARGET, max_metric_drop=DROP)
    assert all(axis.get_legend() is None for axis in figure.axes)
    (legend,) = figure.legends
    assert isinstance(legend, Legend)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend_box = legend.get_window_extent(renderer)
    axes_box = figure.axes[0].get_window_extent(renderer)
    assert legend_box.y1 <= axes_box.y0, "the legend overlaps the plotting area"
    labels = [text.get_text() for text in legend.get_texts()]
    assert {TOLERANCE_LABEL, TARGET_LABEL, ROLLBACK_LABEL, "metric", "sparsity"} <= set(labels)


def test_no_target_line_without_a_target_and_no_marks_without_rollbacks(tmp_path: Path) -> None:
    result = _result()
    result.steps = [s for s in result.steps if s.decision != "rollback"]
    figure = curve_figure(result, name="job", target_sparsity=None, max_metric_drop=DROP)
    lines = [line.get_label() for axis in figure.axes for line in axis.lines]
    assert TARGET_LABEL not in lines and ROLLBACK_LABEL not in lines


def test_write_curve_saves_a_png(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    write_curve(path, result=_result(), name="job", target_sparsity=TARGET, max_metric_drop=DROP)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
