"""The engine call of one job, run in a child process under a memory limit.

The worker process keeps everything that talks to the outside (lease, heartbeat, cancel flag,
store writes, checkpoint uploads); the child runs `core.job.run_job` and nothing else. Step
reports, phases, checkpoints and the class count come back through a pipe, one message at a
time, each answered once the worker has handled it, so that the store sees them in order and
a checkpoint is uploaded before the next one is written. A cancel or a lost lease sets an event
the child's `should_stop` reads between batches.

The limit is RLIMIT_DATA (the process's private writable memory: heap, anonymous mappings,
thread stacks), set in the child before the job starts, so an allocation past it fails with
MemoryError inside the job instead of waking the kernel's OOM killer; RLIMIT_AS would also count
the address space that CUDA and the allocator reserve without using. The children fork from a
forkserver that has imported torch once (and never initialised CUDA), so a job pays no import.
A child that dies anyway (SIGKILL from a cgroup or the OOM killer) fails its job once with
`resource_limit`; the worker process lives on and takes the next job.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import re
import resource
import signal
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contract.errors import as_error_code
from core.contract.layout import MANIFEST
from core.errors import PruneCancelled, PruningError, ResourceLimit
from core.limits import JobLimits, human_bytes
from core.report import StepReport
from core.spec import JobSpec
from workers.errors import StorageUnavailable, disk_error

log = logging.getLogger(__name__)
POLL_S = 0.1
# Imported once by the forkserver, so that no job pays for them (missing ones are skipped).
PRELOAD = (
    "core.job",
    "workers.engine",
    "core.architectures",
    "core.granularity",
    "core.importance",
    "core.seed_ratio",
    "core.latency",
    "core.measure",
    "core.curve",
    "matplotlib.figure",
    "matplotlib.ticker",
    "safetensors.torch",
    "sklearn.datasets",
    "sklearn.model_selection",
    "mnist1d.data",
)
_context: Any = None


@dataclass(frozen=True)
class EngineCall:
    """Everything `run_job` needs, as plain values the child can receive."""

    spec: JobSpec
    out_dir: Path
    work_dir: Path
    device: str
    allowed_entrypoints: tuple[str, ...]
    resume: bool
    limits: JobLimits
    # torch CPU threads (0: by model size, core.threads)
    threads: int = 0
    # local private copies of the spec's URIs, fetched and checked by the worker
    sources: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineHooks:
    """The worker's side of a run: where reports go and whether to stop."""

    on_step: Callable[[StepReport], None]
    on_phase: Callable[[str], None]
    on_checkpoint: Callable[[Path], None]
    on_classes: Callable[[int], None]
    should_stop: Callable[[], bool]


def summary_of(output: Any) -> dict[str, Any]:
    """The job's result from a `core.job.JobOutput`: the run's outcome plus what it measured."""
    from core.contract.records import Manifest

    summary: dict[str, Any] = output.outcome.result.to_dict()
    summary.pop("steps")
    manifest = Manifest.model_validate(output.manifest)
    return {
        **summary,
        "metrics": manifest.metrics,
        "complexity": manifest.complexity,
        "latency": manifest.latency,
        "artifact_sparsity": manifest.sparsity,
    }


def _run(call: EngineCall, hooks: EngineHooks) -> dict[str, Any]:
    from core.contract.entrypoints import EntrypointAllowList
    from core.job import run_job  # torch loads here, never in the API or at worker import

    output = run_job(
        call.spec,
        out_dir=call.out_dir,
        work_dir=call.work_dir,
        device=call.device,
        allowed_entrypoints=EntrypointAllowList.only(call.allowed_entrypoints),
        resume=call.resume,
        on_step=hooks.on_step,
        on_phase=hooks.on_phase,
        on_checkpoint=hooks.on_checkpoint,
        should_stop=hooks.should_stop,
        on_data=lambda data: hooks.on_classes(data.num_classes),
        limits=call.limits,
        sources=call.sources,
        threads=call.threads,
    )
    summary = summary_of(output)
    del output
    return summary


def run_in_process(call: EngineCall, hooks: EngineHooks) -> dict[str, Any]:
    """Run the engine in this process (no memory limit); returns the job's result summary."""
    return _run(call, hooks)


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation failure (host MemoryError, torch's CPU or CUDA OOM)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _child_main(
    conn: multiprocessing.connection.Connection,
    stop: Any,
    call: EngineCall,
    memory_limit_bytes: int,
) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (memory_limit_bytes, memory_limit_bytes))
    # Stop signals are the worker's to handle (it drains the job and tells this child through
    # `stop`); a Ctrl-C reaching the whole process group must not kill the run mid-step.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(number, signal.SIG_IGN)

    def ask(kind: str, value: Any) -> None:
        conn.send((kind, value))
        conn.recv()  # the worker has handled it

    hooks = EngineHooks(
        on_step=lambda report: ask("step", report),
        on_phase=lambda phase: ask("phase", phase),
        on_checkpoint=lambda path: ask("checkpoint", str(path)),
        on_classes=lambda count: ask("classes", count),
        should_stop=stop.is_set,
    )
    try:
        conn.send(("done", _run(call, hooks)))
    except PruneCancelled as error:
        conn.send(("error", ("cancelled", str(error))))
    except PruningError as error:
        conn.send(("error", (error.code, str(error))))
    except BaseException as error:
        disk = disk_error(error)
        if disk is not None:  # the worker requeues the job, as it does for its own disk errors
            conn.send(("error", ("storage_unavailable", str(disk))))
        elif out_of_memory(error):
            asked = re.search(r"allocate (\d+) bytes", str(error))
            message = (
                f"the job ran out of memory under its limit of {human_bytes(memory_limit_bytes)} "
                "(ADAPRUNE_JOB_MEMORY_LIMIT_BYTES)"
                + (f" allocating {human_bytes(int(asked.group(1)))}" if asked else "")
            )
            conn.send(("error", ("resource_limit", message)))
        else:
            log.exception("engine failed")
            conn.send(("error", ("internal_error", f"{type(error).__name__}: {error}")))
    finally:
        conn.close()


def _forkserver() -> Any:
    """The forkserver context, preloading the engine so that each job starts fast."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(list(PRELOAD))
    return _context


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Start children without re-running this process's `__main__` (the worker's command line).

    multiprocessing re-imports the parent's main module in every child it starts; for a worker
    started as `python -m cli worker` that would start a second worker inside the job's child.
    The children need nothing from it: their target lives in this module.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _failure(code: str, message: str) -> Exception:
    if code == "cancelled":
        return PruneCancelled(message)
    if code == "storage_unavailable":
        return StorageUnavailable(message)
    error = PruningError(message)
    error.code = as_error_code(code, default="internal_error")
    return error


def run_in_child(
    call: EngineCall, hooks: EngineHooks, *, memory_limit_bytes: int
) -> dict[str, Any]:
    """Run the engine in a child process whose private memory is capped at the limit.

    Returns:
        The job's result summary, as `summary_of` builds it.

    Raises:
        PruneCancelled: the job stopped on `hooks.should_stop()`.
        ResourceLimit: the child ran out of memory or was killed (SIGKILL).
        PruningError: the engine's own error, with its code.
        Whatever a hook raised (store or storage errors): the child is killed first.
    """
    context = _forkserver()
    parent, child = context.Pipe()
    stop = context.Event()
    process = context.Process(
        target=_child_main, args=(child, stop, call, memory_limit_bytes), daemon=True
    )
    with _bare_main():
        process.start()
    child.close()
    handlers: dict[str, Callable[[Any], None]] = {
        "step": hooks.on_step,
        "phase": hooks.on_phase,
        "checkpoint": lambda path: hooks.on_checkpoint(Path(path)),
        "classes": hooks.on_classes,
    }
    try:
        while True:
            if hooks.should_stop():
                stop.set()
            if not parent.poll(POLL_S):
                if process.is_alive() or parent.poll(0):
                    continue
                break
            try:
                kind, value = parent.recv()
            except EOFError:
                break
            if kind == "done":
                result: dict[str, Any] = value
                return result
            if kind == "error":
                raise _failure(*value)
            handlers[kind](value)
            parent.send(True)
        process.join(timeout=5)
        raise _died(process.exitcode, memory_limit_bytes)
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=10)
        parent.close()


def _died(exitcode: int | None, memory_limit_bytes: int) -> PruningError:
    if exitcode == -9:
        return ResourceLimit(
            "the job's process was killed (SIGKILL), most likely out of memory; its limit is "
            f"{human_bytes(memory_limit_bytes)} (ADAPRUNE_JOB_MEMORY_LIMIT_BYTES)"
        )
    error = PruningError(f"the job's process exited with status {exitcode} before it finished")
    error.code = "internal_error"
    return error


def artifact_files(out_dir: Path) -> list[str]:
    """The artifact's file names (model/<name> for a Hugging Face model), checked to include
    the manifest."""
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    if MANIFEST not in files:
        raise PruningError(f"the engine exported no {MANIFEST}")
    return files
