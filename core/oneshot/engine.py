"""prune_oneshot(): layer-wise one-shot pruning of a transformer, block by block.

Sequential calibration: the first block's inputs are captured once; each block in turn is
moved to the device, its layers' input statistics are gathered by running it (dense) on the
stored activations, its layers are pruned, and the pruned block is run again to give the next
block its inputs (so every block is calibrated on what the already-pruned blocks before it
produce). Only that block and one set of activations are on the device; the rest of the model
stays where it was. After each block its weights and the run's progress are saved, and a
StepReport (one per block: target and measured sparsity, output reconstruction error as the
loss, seconds) goes to `on_step`. A run given the same checkpoint directory resumes after the
last saved block, replaying the saved blocks on the calibration data for its inputs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import PruneCancelled
from core.oneshot.allocation import outlier_ratio
from core.oneshot.blocks import find_blocks, prunable_layers, set_weight_matrix, weight_matrix
from core.oneshot.capture import BlockInputs, as_batches, capture_block_inputs, run_block
from core.oneshot.config import OneShotConfig
from core.oneshot.methods import wanda_scores
from core.oneshot.progress import Progress, load_block, load_progress, save_block, save_progress
from core.oneshot.stats import TokenFilter, recording_inputs
from core.report import StepCallback, StepReport

Batch = Mapping[str, Tensor]


@dataclass
class BlockRecord:
    """What pruning one block did and cost."""

    index: int
    name: str
    target_sparsity: float
    sparsity: float
    reconstruction_error: float  # ||Y' - Y||^2 / ||Y||^2 of the block's outputs; NaN if not run
    seconds: float
    activation_bytes: int  # calibration hidden states held while the block ran
    peak_device_bytes: int | None  # torch.cuda's peak while the block ran; None on the CPU
    layers: dict[str, float] = field(default_factory=dict)


@dataclass
class OneShotResult:
    """The outcome of `prune_oneshot`; `layer_sparsity` is counted from the weights."""

    config: dict[str, Any]
    blocks_path: str
    sparsity: float
    block_sparsities: list[float]
    layer_sparsity: dict[str, float]
    blocks: list[BlockRecord]
    steps: list[StepReport]
    seconds: float
    resumed_at: int
    # the block `out_of_time` stopped the run before (the blocks from it on are dense)
    stopped_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [step.to_dict() for step in self.steps]
        return data


def _fingerprint(
    config: OneShotConfig, blocks: int, batches: list[dict[str, Tensor]]
) -> dict[str, Any]:
    digest = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch):
            digest.update(key.encode())
            digest.update(batch[key].detach().cpu().contiguous().numpy().tobytes())
    return {"config": config.to_dict(), "blocks": blocks, "calibration": digest.hexdigest()}


def _count(block: nn.Module, prefix: str) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    for name, layer in prunable_layers(block).items():
        matrix = weight_matrix(layer)
        counts[f"{prefix}.{name}"] = (int((matrix == 0).sum()), matrix.numel())
    return counts


def _sparsity(counts: Mapping[str, tuple[int, int]]) -> float:
    total = sum(size for _, size in counts.values())
    return sum(zeros for zeros, _ in counts.values()) / total if total else 0.0


def _cuda_peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _outlier_ratios(
    blocks: nn.ModuleList, inputs: BlockInputs, threshold: float, device: torch.device
) -> list[float]:
    """OWL's outlier ratio of every block of the dense model, run sequentially."""
    ratios = []
    for block in blocks:
        home = next(block.parameters()).device
        block.to(device)
        layers = prunable_layers(block)
        tokens = TokenFilter()
        with recording_inputs(layers, hessian=False, device=device, tokens=tokens) as stats:
            outputs = list(_outputs(block, inputs, tokens))
        scores = [wanda_scores(weight_matrix(layers[n]).float(), stats[n]) for n in layers]
        ratios.append(outlier_ratio(scores, threshold))
        block.to(home)
        inputs.hidden = outputs
    return ratios


def _prune_block(
    block: nn.Module,
    inputs: BlockInputs | None,
    config: OneShotConfig,
    sparsity: float,
    device: torch.device,
) -> tuple[float, dict[str, float]]:
    """Prune `block` in place (on `device`); advance `inputs` to its pruned outputs.

    Returns the output reconstruction error and the seconds of each phase.
    """
    method = config.build_method()
    layers = prunable_layers(block)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    dense: list[Tensor] = []
    if inputs is not None and method.needs_inputs:
        tokens = TokenFilter()
        with recording_inputs(
            layers, hessian=method.needs_hessian, device=device, tokens=tokens
        ) as stats:
            dense = list(_outputs(block, inputs, tokens))
    else:
        stats = {}
    phases["calibrate"] = time.perf_counter() - started
    started = time.perf_counter()
    target = config.target(sparsity)
    for name, layer in layers.items():
        pruned = method.prune(weight_matrix(layer).detach().float(), stats.get(name), target)
        set_weight_matrix(layer, pruned)
        stats.pop(name, None)  # frees a Hessian as soon as its layer is done
    phases["prune"] = time.perf_counter() - started
    started = time.perf_counter()
    error = float("nan")
    if inputs is not None:
        squared, reference = 0.0, 0.0
        for index, output in enumerate(_outputs(block, inputs)):
            if dense:
                squared += float((output.float() - dense[index].float()).square().sum())
                reference += float(dense[index].float().square().sum())
                dense[index] = output  # the dense output is no longer needed
            inputs.hidden[index] = output
        error = squared / reference if reference > 0 else float("nan")
    phases["propagate"] = time.perf_counter() - started
    return error, phases


def prune_oneshot(
    model: nn.Module,
    calibration: Sequence[Batch | Tensor],
    config: OneShotConfig,
    *,
    device: torch.device | str | None = None,
    checkpoint_dir: Path | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    out_of_time: Callable[[], bool] | None = None,
) -> OneShotResult:
    """Prune every block of `model` in place with `config`'s method, one block at a time.

    `calibration`: batches of model inputs (dicts such as {"input_ids", "attention_mask"}, or
    `input_ids` tensors). `device`: where each block and the activations go (default: where
    the model is). `should_stop` is checked between blocks. `evaluate(model)`, when given, is
    called after each block (that block and those before it pruned) and its value is the
    step's metric; without it the step's metric is NaN. `out_of_time()` True between blocks
    ends the run there (the budget is spent): the result's `stopped_at` names the first block
    left dense.

    Raises:
        PruneCancelled: `should_stop` returned True (the finished blocks are saved).
        CheckpointInvalid: `checkpoint_dir` holds a run with other settings or data.
    """
    begun = time.perf_counter()
    blocks_path, blocks = find_blocks(model)
    home = next(model.parameters()).device
    target_device = torch.device(device) if device is not None else home
    batches = as_batches(calibration)
    method = config.build_method()
    allocation = config.build_allocation()
    needs_inputs = method.needs_inputs or allocation.needs_inputs
    if needs_inputs and not batches:
        raise ValueError(f"{config.method} with {config.allocation} needs calibration batches")
    fingerprint = _fingerprint(config, len(blocks), batches)
    progress = load_progress(checkpoint_dir, fingerprint) if checkpoint_dir else None
    inputs: BlockInputs | None = None
    if progress is None:
        ratios = None
        if allocation.needs_inputs:
            dense_inputs = capture_block_inputs(model, blocks[0], batches, target_device)
            ratios = _outlier_ratios(blocks, dense_inputs, config.owl_threshold, target_device)
            del dense_inputs
        sparsities = allocation.sparsities(config.target_sparsity, ratios, len(blocks))
        progress = Progress(fingerprint=fingerprint, sparsities=sparsities)
    resumed_at = progress.blocks_done
    for index in range(resumed_at):
        load_block(checkpoint_dir or Path(), index, blocks[index])
    if method.needs_inputs:
        inputs = capture_block_inputs(model, blocks[0], batches, target_device)
        for index in range(resumed_at):
            _replay(blocks[index], inputs, target_device)
    records = [_block_record(record) for record in progress.blocks]
    steps = [StepReport.model_validate(_nan_for_none(step)) for step in progress.steps]
    stopped_at: int | None = None
    for index in range(resumed_at, len(blocks)):
        if should_stop is not None and should_stop():
            raise PruneCancelled(f"stopped before block {index} of {len(blocks)}")
        if out_of_time is not None and out_of_time():
            stopped_at = index
            break
        started = time.perf_counter()
        block = blocks[index]
        block_home = next(block.parameters()).device
        if target_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(target_device)
        block.to(target_device)
        sparsity = progress.sparsities[index]
        error, phases = _prune_block(block, inputs, config, sparsity, target_device)
        name = f"{blocks_path}.{index}"
        counts = _count(block, name)
        peak = _cuda_peak(target_device)
        block.to(block_home)
        metric = float(evaluate(model)) if evaluate is not None else float("nan")
        seconds = time.perf_counter() - started
        record = BlockRecord(
            index=index,
            name=name,
            target_sparsity=sparsity,
            sparsity=_sparsity(counts),
            reconstruction_error=error,
            seconds=seconds,
            activation_bytes=inputs.nbytes() if inputs is not None else 0,
            peak_device_bytes=peak,
            layers={layer: zeros / size for layer, (zeros, size) in counts.items()},
        )
        step = StepReport(
            step=index + 1,
            target_sparsity=sparsity,
            sparsity=record.sparsity,
            metric=metric,
            loss=error,
            decision="scheduled",
            seconds=seconds,
            epochs=0,
            phase_seconds=phases,
        )
        records.append(record)
        steps.append(step)
        progress.blocks_done = index + 1
        progress.blocks.append(asdict(record))
        progress.steps.append(step.to_dict())
        if checkpoint_dir is not None:
            save_block(checkpoint_dir, index, block)
            save_progress(checkpoint_dir, progress)
        if on_step is not None:
            on_step(step)
    counts = {}
    for index, block in enumerate(blocks):
        counts.update(_count(block, f"{blocks_path}.{index}"))
    return OneShotResult(
        config=config.to_dict(),
        blocks_path=blocks_path,
        sparsity=_sparsity(counts),
        block_sparsities=list(progress.sparsities),
        layer_sparsity={name: zeros / size for name, (zeros, size) in counts.items()},
        blocks=records,
        steps=steps,
        seconds=time.perf_counter() - begun,
        resumed_at=resumed_at,
        stopped_at=stopped_at,
    )


def _outputs(
    block: nn.Module, inputs: BlockInputs, tokens: TokenFilter | None = None
) -> Iterator[Tensor]:
    """The block's output for each stored batch in turn (one batch at a time, lazily); with
    `tokens`, each batch's attention mask is set there while that batch runs."""
    batches = zip(inputs.hidden, inputs.args, inputs.kwargs, strict=True)
    for index, (states, args, kwargs) in enumerate(batches):
        if tokens is not None:
            tokens.current = inputs.keep[index] if index < len(inputs.keep) else None
        yield run_block(block, states, args, kwargs)


def _replay(block: nn.Module, inputs: BlockInputs, device: torch.device) -> None:
    """Advance `inputs` through an already-pruned block (resuming after it)."""
    block_home = next(block.parameters()).device
    block.to(device)
    inputs.hidden = list(_outputs(block, inputs))
    block.to(block_home)


def _block_record(saved: Mapping[str, Any]) -> BlockRecord:
    error = saved["reconstruction_error"]
    return BlockRecord(
        **{**saved, "reconstruction_error": float("nan") if error is None else error}
    )


def _nan_for_none(step: Mapping[str, Any]) -> dict[str, Any]:
    return {key: float("nan") if value is None else value for key, value in step.items()}
