"""`adaprune up --demo`: submit a spec to the running service, follow it, verify its artifact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.progress import wait_with_progress
from core.contract.layout import sha256_file
from core.contract.records import JobResult, Manifest
from core.contract.specfile import load_spec_file
from service.client import AdapruneClient

DEMO_TIMEOUT_S = 1800.0


def verify_artifact(directory: Path) -> Manifest:
    """Check every file against the manifest's sha256 and rebuild the model from it.

    Returns:
        The manifest.

    Raises:
        ArtifactInvalid: a checksum differs or the weights do not fit the architecture.
    """
    from core.artifact import load, manifest_record, read_manifest
    from core.errors import ArtifactInvalid

    manifest = manifest_record(read_manifest(directory))
    for name, entry in manifest.files.items():
        if sha256_file(directory / name) != entry.sha256:
            raise ArtifactInvalid(f"{name}: sha256 differs from the manifest")
    load(directory, verify=True)
    return manifest


def summary_table(job: dict[str, Any], manifest: Manifest, directory: Path) -> Table:
    """The demo's result: metrics, sparsity, size and latency, dense against pruned."""
    metrics = manifest.metrics
    sizes = manifest.complexity
    table = Table(title=f"job {job['id']} ({job['name']}): {job['state']}")
    table.add_column("")
    table.add_column("dense", justify="right")
    table.add_column("pruned", justify="right")
    for split in metrics["dense"]:
        table.add_row(
            f"accuracy ({split})",
            f"{metrics['dense'][split]:.4f}",
            f"{metrics['pruned'][split]:.4f}",
        )
    sparsity = manifest.sparsity
    headline = sparsity.get("sparsity_all_weights", sparsity["overall"])
    table.add_row("sparsity (all weights)", "0.000", f"{headline:.3f}")
    table.add_row(
        "nonzero params",
        f"{sizes['dense']['nonzero']:,}",
        f"{sizes['pruned']['nonzero']:,}",
    )
    for batch in (manifest.latency or {}).get("batches", []):
        if not batch.get("rounds", 1):
            continue
        table.add_row(
            f"latency, batch {batch['batch_size']} (ms)",
            f"{batch['dense']['median_s'] * 1e3:.3f}",
            f"{batch['pruned']['median_s'] * 1e3:.3f} ({batch.get('verdict', '')})",
        )
    result = JobResult.model_validate(job["result"]) if job.get("result") else None
    table.add_row("stop reason", "", result.stop_reason if result else "")
    table.add_row("artifact", "", str(directory))
    return table


def run_demo(
    *,
    base_url: str,
    api_key: str,
    spec_path: Path,
    home: Path,
    check: Callable[[], None] | None = None,
) -> int:
    """Submit `spec_path`, show progress, pull the artifact under `home`/demo and verify it.

    Args:
        check: called on every poll; what it raises (a service process that died) ends the
            demo at once.

    Returns:
        0 when the job succeeded and its artifact verified, else 1.
    """
    console = Console(stderr=True)
    spec = load_spec_file(spec_path)
    with AdapruneClient(base_url, api_key=api_key) as client:
        job = client.submit(spec)
        console.print(f"submitted job {job['id']} ({spec_path})")
        final = wait_with_progress(
            client,
            job,
            timeout_s=DEMO_TIMEOUT_S,
            console=console,
            on_poll=None if check is None else lambda _job: check(),
        )
        if final["state"] != "succeeded":
            return 1
        directory = client.pull(job["id"], home / "demo" / job["id"])
    manifest = verify_artifact(directory)
    console.print(summary_table(final, manifest, directory))
    console.print("artifact verified: every sha256 matches and the model rebuilds")
    print(json.dumps({"job": final["id"], "artifact": str(directory)}))
    return 0
