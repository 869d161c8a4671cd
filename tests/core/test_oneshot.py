"""One-shot pruning of whole transformers: targets reached per layer from the weights, N:M
patterns, sequential calibration, OWL, resume after a kill, memory per block."""

from __future__ import annotations

import copy
import gc
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from core.errors import CheckpointInvalid, PruneCancelled
from core.oneshot.blocks import find_blocks, prunable_layers, weight_matrix
from core.oneshot.capture import capture_block_inputs, run_on_all
from core.oneshot.config import OneShotConfig
from core.oneshot.engine import prune_oneshot
from core.oneshot.methods import LayerTarget, WandaOneShot
from core.oneshot.stats import recording_inputs
from core.report import StepReport
from tests.core.oneshot_models import calibration, tiny_bert, tiny_gpt2, tiny_llama, with_mask

CPU = torch.device("cpu")


def layer_weights(model: nn.Module) -> dict[str, Tensor]:
    path, blocks = find_blocks(model)
    return {
        f"{path}.{index}.{name}": weight_matrix(layer).detach()
        for index, block in enumerate(blocks)
        for name, layer in prunable_layers(block).items()
    }


class Killed(Exception):
    """Stands for the process dying right after a block's checkpoint."""


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("granularity", ["unstructured", "2:4"])
@pytest.mark.parametrize("build", [tiny_llama, tiny_bert, tiny_gpt2], ids=lambda b: b.__name__)
def test_every_layer_reaches_the_target_counted_from_the_weights(method, granularity, build):
    model = build()
    tokens = calibration()
    batches = with_mask(tokens) if build is tiny_bert else tokens
    steps: list[StepReport] = []
    result = prune_oneshot(
        model,
        batches,
        OneShotConfig(method=method, target_sparsity=0.5, granularity=granularity),
        on_step=steps.append,
    )
    weights = layer_weights(model)
    assert weights and set(result.layer_sparsity) == set(weights)
    for name, weight in weights.items():
        assert int((weight == 0).sum()) == weight.numel() // 2, name
        assert result.layer_sparsity[name] == 0.5
        if granularity == "2:4":
            rows, columns = weight.shape
            kept = (weight != 0).reshape(rows, columns // 4, 4).sum(-1)
            assert (kept == 2).all(), name
    assert [step.step for step in steps] == [1, 2]
    assert all(step.sparsity == 0.5 and step.decision == "scheduled" for step in steps)
    assert result.sparsity == 0.5


def test_each_step_carries_the_metric_evaluated_after_its_block():
    model = tiny_llama(layers=3)
    seen: list[float] = []

    def evaluate(current: nn.Module) -> float:
        zeros = sum(int((w == 0).sum()) for w in layer_weights(current).values())
        seen.append(zeros)
        return float(zeros)

    result = prune_oneshot(
        model, [], OneShotConfig(method="magnitude", target_sparsity=0.5), evaluate=evaluate
    )
    assert [step.metric for step in result.steps] == seen
    assert seen[0] < seen[1] < seen[2]  # evaluated after each block, the pruned ones so far


def test_each_block_is_calibrated_on_the_pruned_blocks_before_it():
    dense = tiny_llama(layers=2)
    tokens = calibration()
    pruned = copy.deepcopy(dense)
    prune_oneshot(pruned, tokens, OneShotConfig(method="wanda", target_sparsity=0.5))
    # by hand: block 1's inputs are pruned block 0's outputs on the captured inputs
    _, dense_blocks = find_blocks(dense)
    _, pruned_blocks = find_blocks(pruned)
    inputs = capture_block_inputs(dense, dense_blocks[0], tokens, CPU)
    inputs.hidden = run_on_all(pruned_blocks[0], inputs)
    expected = copy.deepcopy(dense_blocks[1])
    layers = prunable_layers(expected)
    with recording_inputs(layers, hessian=False, device=CPU) as stats:
        run_on_all(expected, inputs)
    for name, layer in layers.items():
        want = WandaOneShot().prune(weight_matrix(layer).detach(), stats[name], LayerTarget(0.5))
        got = weight_matrix(prunable_layers(pruned_blocks[1])[name])
        assert torch.equal(got, want), name
    # calibrating block 1 on the dense block 0's outputs would have chosen other weights
    dense_inputs = capture_block_inputs(dense, dense_blocks[0], tokens, CPU)
    dense_inputs.hidden = run_on_all(dense_blocks[0], dense_inputs)
    layers = prunable_layers(copy.deepcopy(dense_blocks[1]))
    with recording_inputs(layers, hessian=False, device=CPU) as dense_stats:
        run_on_all(dense_blocks[1], dense_inputs)
    name = "mlp.down_proj"
    other = WandaOneShot().prune(
        weight_matrix(layers[name]).detach(), dense_stats[name], LayerTarget(0.5)
    )
    assert not torch.equal(other, weight_matrix(prunable_layers(pruned_blocks[1])[name]))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "owl"])
def test_padding_positions_are_not_calibration_data(method):
    """Right padding that the attention mask marks changes no statistic: the pruned weights
    are those of the same real tokens given without padding."""
    dense = tiny_llama(layers=2)
    (tokens,) = calibration(batches=1, batch=3, length=11)
    pads = torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(5))
    padded = {
        "input_ids": torch.cat([tokens, pads], dim=1),
        "attention_mask": torch.cat([torch.ones(3, 11), torch.zeros(3, 6)], dim=1).long(),
    }
    config = (
        OneShotConfig(method="wanda", target_sparsity=0.6, allocation="owl", owl_threshold=2.0)
        if method == "owl"
        else OneShotConfig(method=method, target_sparsity=0.5)
    )
    plain, with_padding = copy.deepcopy(dense), copy.deepcopy(dense)
    plain_result = prune_oneshot(plain, [tokens], config)
    padded_result = prune_oneshot(with_padding, [padded], config)
    assert padded_result.block_sparsities == pytest.approx(plain_result.block_sparsities)
    want, got = layer_weights(plain), layer_weights(with_padding)
    for name in want:
        assert torch.equal(want[name] == 0, got[name] == 0), name
        assert torch.allclose(want[name], got[name], atol=1e-5), name


def test_sparsegpt_reconstructs_every_block_better_than_wanda():
    tokens = calibration(batches=4, batch=4, length=16)
    errors = {}
    for method in ("wanda", "sparsegpt"):
        result = prune_oneshot(
            tiny_llama(layers=3, hidden=64),
            tokens,
            OneShotConfig(method=method, target_sparsity=0.5),
        )
        errors[method] = [block.reconstruction_error for block in result.blocks]
        assert all(0.0 < error < 1.0 for error in errors[method])
    assert all(s < w for s, w in zip(errors["sparsegpt"], errors["wanda"], strict=True))


def test_owl_varies_the_blocks_and_holds_the_mean_at_the_target():
    model = tiny_llama(layers=4)
    result = prune_oneshot(
        model, calibration(), OneShotConfig(method="wanda", target_sparsity=0.7, allocation="owl")
    )
    sparsities = result.block_sparsities
    assert sum(sparsities) / 4 == pytest.approx(0.7)
    assert max(sparsities) - min(sparsities) == pytest.approx(0.16)
    measured = [block.sparsity for block in result.blocks]
    for want, got in zip(sparsities, measured, strict=True):
        assert got == pytest.approx(want, abs=1 / 32)  # rounding within a 32-wide row
    assert sum(measured) / 4 == pytest.approx(0.7, abs=0.01)
    assert len({round(value, 3) for value in measured}) > 1


def test_owl_refuses_an_nm_pattern():
    with pytest.raises(ValueError, match="N:M"):
        OneShotConfig(method="wanda", target_sparsity=0.5, granularity="2:4", allocation="owl")


@pytest.mark.parametrize(
    "config",
    [
        OneShotConfig(method="sparsegpt", target_sparsity=0.5),
        OneShotConfig(method="wanda", target_sparsity=0.6, allocation="owl"),
        OneShotConfig(method="magnitude", target_sparsity=0.5, granularity="2:4"),
    ],
    ids=lambda c: f"{c.method}-{c.allocation}-{c.granularity}",
)
def test_a_run_killed_between_blocks_resumes_to_the_same_weights(tmp_path: Path, config):
    tokens = calibration()
    uninterrupted = tiny_llama(layers=4)
    whole = prune_oneshot(uninterrupted, tokens, config)

    def die_after_two(step: StepReport) -> None:
        if step.step == 2:
            raise Killed

    first = tiny_llama(layers=4)
    with pytest.raises(Killed):
        prune_oneshot(first, tokens, config, checkpoint_dir=tmp_path, on_step=die_after_two)
    seen: list[int] = []
    resumed_model = tiny_llama(layers=4)  # a fresh process rebuilds the dense model
    resumed = prune_oneshot(
        resumed_model,
        tokens,
        config,
        checkpoint_dir=tmp_path,
        on_step=lambda step: seen.append(step.step),
    )
    assert resumed.resumed_at == 2 and seen == [3, 4]
    assert [step.step for step in resumed.steps] == [1, 2, 3, 4]
    assert resumed.block_sparsities == whole.block_sparsities
    for name, weight in layer_weights(uninterrupted).items():
        assert torch.equal(weight, layer_weights(resumed_model)[name]), name
    assert (tmp_path / "oneshot" / "block-0003.safetensors").exists()


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path):
    tokens = calibration()
    config = OneShotConfig(method="wanda", target_sparsity=0.5)
    prune_oneshot(tiny_llama(), tokens, config, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointInvalid, match="other settings or calibration"):
        prune_oneshot(tiny_llama(), calibration(seed=1), config, checkpoint_dir=tmp_path)


def test_a_stop_between_blocks_cancels_and_the_finished_blocks_count(tmp_path: Path):
    tokens = calibration()
    config = OneShotConfig(method="wanda", target_sparsity=0.5)
    calls = iter([False, True])
    with pytest.raises(PruneCancelled, match="block 1"):
        prune_oneshot(
            tiny_llama(), tokens, config, checkpoint_dir=tmp_path, should_stop=lambda: next(calls)
        )
    result = prune_oneshot(tiny_llama(), tokens, config, checkpoint_dir=tmp_path)
    assert result.resumed_at == 1 and result.sparsity == 0.5


def live_activation_tensors(shape: tuple[int, ...]) -> int:
    """How many tensors of `shape` are alive (gc tracks every tensor object)."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on lazy modules' deprecated attributes
        return sum(
            1 for item in gc.get_objects() if type(item) is Tensor and tuple(item.shape) == shape
        )


def test_the_activations_held_per_block_do_not_grow_with_depth():
    batches, batch, length, hidden = 3, 5, 7, 48
    tokens = calibration(batches=batches, batch=batch, length=length)
    held: dict[int, list[int]] = {}
    recorded: dict[int, list[int]] = {}
    for depth in (2, 3):
        counts: list[int] = []

        def count(_: StepReport, into: list[int] = counts) -> None:
            into.append(live_activation_tensors((batch, length, hidden)))

        model = tiny_llama(layers=depth, hidden=hidden)
        result = prune_oneshot(
            model, tokens, OneShotConfig(method="sparsegpt", target_sparsity=0.5), on_step=count
        )
        held[depth] = counts
        recorded[depth] = [block.activation_bytes for block in result.blocks]
    one_set = batches * batch * length * hidden * 4
    assert set(recorded[2]) == set(recorded[3]) == {one_set}
    # at the end of every block exactly one set of hidden states is alive, whatever the depth
    assert set(held[2]) == set(held[3]) == {batches}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_only_the_block_is_moved_and_the_peak_stays_flat():
    tokens = calibration(batches=2, batch=4, length=32)
    peaks = {}
    for depth in (2, 6):
        model = tiny_llama(layers=depth, hidden=64)
        result = prune_oneshot(
            model, tokens, OneShotConfig(method="sparsegpt", target_sparsity=0.5), device="cuda"
        )
        assert next(model.parameters()).device.type == "cpu"
        peaks[depth] = max(block.peak_device_bytes or 0 for block in result.blocks)
    assert peaks[6] <= peaks[2] * 1.1
