"""`adaprune run SPEC --out DIR`: one job on this machine, no service, with a progress bar."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.outcome import outcome_line
from core.contract.errors import AdapruneError
from core.contract.records import JobResult, Manifest
from core.contract.specfile import SpecFileInvalid, describe_validation, load_spec_file
from core.spec import JobSpec


class UsageError(AdapruneError):
    """A problem with the command's input: printed as one line, exit status 2."""

    code = "usage_error"


def read_spec(path: Path) -> JobSpec:
    """Parse a YAML or JSON spec file and validate it; UsageError names what is wrong."""
    try:
        raw = load_spec_file(path)
    except SpecFileInvalid as error:
        raise UsageError(str(error)) from error
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        raise UsageError(f"invalid spec: {describe_validation(error)}") from error


def check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {str(out)!r} already exists and is not an empty directory")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _speed(row: Mapping[str, Any]) -> str:
    """The measured ratio with its interval and verdict, e.g. "1.42x [1.31, 1.55] faster"."""
    interval = row.get("speedup_interval")
    ratio = row.get("speedup")
    text = f"{ratio:.2f}x" if ratio else ""
    if interval:
        text += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"({text} {row.get('verdict', '')})".replace("( ", "(")


def summary_table(manifest: Manifest) -> Table:
    """Dense vs pruned: metrics, sparsity, size, MACs and measured latency."""
    table = Table(title=f"adaprune: {manifest.spec['name']}")
    table.add_column("")
    table.add_column("dense", justify="right")
    table.add_column("pruned", justify="right")
    metrics = manifest.metrics
    name = manifest.spec.get("task", {}).get("metric", "accuracy")
    for split in ("val", "test"):
        if split in metrics["pruned"]:
            table.add_row(
                f"{split} {name}", _fmt(metrics["dense"][split]), _fmt(metrics["pruned"][split])
            )
    sparsity = manifest.sparsity
    table.add_row(
        "sparsity, all weights (file)",
        "0",
        _fmt(sparsity.get("sparsity_all_weights", sparsity["overall"])),
    )
    table.add_row("sparsity, prunable layers", "0", _fmt(sparsity["overall"]))
    sizes = manifest.complexity
    for key in ("params", "nonzero", "macs"):
        table.add_row(key, _fmt(sizes["dense"][key]), _fmt(sizes["pruned"][key]))
    latency = manifest.latency or {}
    for row in latency.get("batches", []):
        if not row.get("rounds"):
            continue
        table.add_row(
            f"latency b={row['batch_size']} ({latency['device']})",
            f"{row['dense']['median_s'] * 1e3:.3f} ms",
            f"{row['pruned']['median_s'] * 1e3:.3f} ms {_speed(row)}",
        )
        rates = row.get("tokens_per_s") or {}
        if "dense" in rates and "pruned" in rates:
            table.add_row(
                f"tokens/s b={row['batch_size']} x {row['sequence_length']}",
                f"{rates['dense']:,.0f}",
                f"{rates['pruned']:,.0f}",
            )
    result = JobResult.model_validate(manifest.result)
    table.caption = (
        f"{outcome_line(manifest.result, manifest.spec['prune'])}\n"
        f"criterion {result.criterion}, stop: {result.stop_reason}, best sparsity within "
        f"tolerance {_fmt(result.best_sparsity_within_tolerance)}"
    )
    return table


def _run(
    spec: JobSpec, out: Path, *, device: str, threads: int, console: Console
) -> dict[str, Any]:
    from core.job import run_job  # torch loads here, after the input has been checked

    work = Path(tempfile.mkdtemp(prefix="adaprune-run-"))
    target = spec.prune.target
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("sparsity {task.completed:.3f}/{task.total:.3f}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("baseline", total=target)

            def on_step(report: Any) -> None:
                progress.update(
                    bar,
                    completed=min(report.sparsity, target),
                    description=f"step {report.step} {report.decision} acc {report.metric:.4f}",
                )

            def on_phase(phase: str) -> None:
                progress.update(bar, description=phase)

            output = run_job(
                spec,
                out_dir=out,
                work_dir=work,
                device=device,
                threads=threads,
                on_step=on_step,
                on_phase=on_phase,
            )
            result = output.outcome.result
            # a missed target leaves the bar where the sparsity ended, not at 100 %
            ended = target if result.target_reached else min(result.sparsity, target)
            progress.update(
                bar,
                completed=ended,
                description="done" if result.target_reached else "target missed",
            )
        return output.manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(spec_path: str, out: str, *, device: str = "auto", threads: int = 0) -> int:
    """Run the job in `spec_path`, write its artifact to `out`; return the exit status."""
    console = Console(stderr=True)
    out_dir = Path(out)
    try:
        spec = read_spec(Path(spec_path))
        check_out_dir(out_dir)
        from core.errors import PruningError

        try:
            manifest = _run(spec, out_dir, device=device, threads=threads, console=console)
        except PruningError as error:
            print(f"adaprune run: {error.code}: {error}", file=sys.stderr)
            return 1
        except ValueError as error:
            print(f"adaprune run: {error}", file=sys.stderr)
            return 2
    except UsageError as error:
        print(f"adaprune run: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adaprune run: interrupted; no artifact written", file=sys.stderr)
        return 130
    Console().print(summary_table(Manifest.model_validate(manifest)))
    print(outcome_line(manifest["result"], manifest["spec"]["prune"]))
    print(f"artifact written to {out_dir.resolve()}")
    return 0
