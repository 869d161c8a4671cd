"""A terminal progress bar for a job, fed by the steps endpoint."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from cli.outcome import outcome_line, target_reached
from service.client import AdapruneClient, PollCallback


def wait_with_progress(
    client: AdapruneClient,
    job: dict[str, Any],
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    console: Console | None = None,
    on_poll: PollCallback | None = None,
) -> dict[str, Any]:
    """Wait for `job` to end, drawing sparsity progress on stderr; returns the final job.

    The bar's length is the target sparsity; each new step moves it to the step's measured
    sparsity and shows its metric and the controller's decision. `on_poll` sees the job after
    every poll; what it raises ends the wait. A job that succeeded without reaching its target
    leaves the bar where its sparsity ended and says why.
    """
    console = console or Console(stderr=True)
    target = float(job.get("target_sparsity") or 1.0)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(job.get("name", "job"), total=target, detail="queued")

        def on_step(step: dict[str, Any]) -> None:
            detail = (
                f"step {step['step']} {step['decision']}: sparsity {step['sparsity']:.3f} "
                f"metric {step['metric']:.4f}"
            )
            progress.update(bar, completed=min(target, float(step["sparsity"])), detail=detail)

        final = client.wait(
            job["id"], on_step=on_step, poll_s=poll_s, timeout_s=timeout_s, on_poll=on_poll
        )
        result = final.get("result") or {}
        if final["state"] == "succeeded":
            if target_reached(result):
                progress.update(bar, completed=target)
            else:
                ended = float(result.get("sparsity") or final.get("sparsity") or 0.0)
                progress.update(bar, completed=min(target, ended), detail="target missed")
    state = final["state"]
    if state == "succeeded" and result:
        print(outcome_line(result, (final.get("spec") or {}).get("prune", {})), file=sys.stderr)
    if state != "succeeded":
        error = final.get("error") or {}
        reason = f": {error.get('code')}: {error.get('message')}" if error else ""
        print(f"job {final['id']} {state}{reason}", file=sys.stderr)
    return final
