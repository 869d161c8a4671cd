"""Width and depth pruning of the benchmark LM (and MiniLM) through the product path, `run_job`.

Causal LM: the cached 1.1 M-parameter Llama of bench/llm_lm.py is saved with `save_pretrained`
(with its BPE tokenizer as a `PreTrainedTokenizerFast`) into a temporary directory, the task is
written as JSONL (causal-lm: texts of consecutive BBC tokens, training windows from the
training articles, validation and test windows from the held-out ones, the split of
bench/llm_text.py), and four jobs run: width 30 % and depth 25 %, each recovered with the task
loss alone and with distillation from the dense model, for the same number of epochs. Every
figure comes from the job's manifest: parameters counted from the saved file, test
perplexity dense and pruned, forward latency at batch 8 x 128 tokens (ratio, bootstrap
interval, verdict) and `generate` tokens/s.

MiniLM (`--part minilm`): the cached BBC News classifier of bench/llm_minilm.py, width 30 %
with distillation; accuracy dense and pruned on the held-out articles and latency; and one-shot
Wanda 2:4 followed by the job's masked recovery with distillation.

Each job's manifest is kept under bench/.cache/shrink-results/ so the section can be rendered
again without rerunning (`--render`). Run: `nice -n 5 python bench/shrink.py [--part lm|minilm]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section
from bench.llm_text import CACHE, bbc_articles
from core.spec import JobSpec

RESULTS = CACHE / "shrink-results"
SEQ = 128
# decoded windows are a little longer than SEQ so that re-encoding them still fills SEQ tokens
WINDOW = SEQ + 24
LM_SPLITS = {"train": 192, "val": 48, "test": 96}
LM_EPOCHS = 2
LM_LR = 1e-3
# a forward of 8 x 128 took 0.35 s on the loaded 2-core box and 25 ms idle: 60 s of timing
# gives the 40 rounds the latency comparison takes at most
LATENCY_SECONDS = 60.0
LM_JOBS: list[tuple[str, str, float, bool]] = [
    ("width-30-distill", "width", 0.30, True),
    ("width-30", "width", 0.30, False),
    ("depth-25", "depth", 0.25, False),
    ("depth-25-distill", "depth", 0.25, True),
]
MINILM_TRAIN = 192
MINILM_EPOCHS = 2
MINILM_RECOVERY_EPOCHS = 1  # after one-shot Wanda 2:4: masked fine-tuning with distillation
MINILM_LENGTH = 64


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path.as_uri()


def _lm_windows(tokenizer: Any, texts: list[str], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` texts, each the decoding of `WINDOW` consecutive tokens at a random offset."""
    import torch

    from bench.llm_lm import windows
    from bench.llm_text import token_stream

    tokens = token_stream(tokenizer, texts)
    generator = torch.Generator().manual_seed(seed)
    picked = windows(tokens, count, WINDOW, generator)
    return [{"text": tokenizer.decode(row.tolist())} for row in picked]


def _lm_model_dir(directory: Path) -> Path:
    """The cached LM and its tokenizer as a `from_pretrained` directory."""
    from transformers import PreTrainedTokenizerFast

    from bench.llm_lm import LMSettings, trained_lm
    from bench.llm_text import bpe_tokenizer

    settings = LMSettings()
    if not (CACHE / settings.key() / "training.json").exists():
        raise SystemExit(f"the trained LM is not cached ({settings.key()}): run bench/llm.py first")
    model, _ = trained_lm(None, settings)  # type: ignore[arg-type]  # cached: no training data
    model.save_pretrained(directory)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe_tokenizer([], settings.vocab),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.save_pretrained(directory)
    return directory


def _lm_spec(
    model: Path, data: dict[str, str], granularity: str, target: float, distill: bool
) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"hf": model.as_uri()},
            "task": {"kind": "causal-lm", "data": data, "max_length": SEQ},
            "prune": {
                "granularity": granularity,
                "target_sparsity": target,
                # perplexity's drop is relative: 1.0 is the target's "at most 2x dense"
                "max_metric_drop": 1.0,
                "calibration_samples": 32,
            },
            "finetune": {
                "final_epochs": LM_EPOCHS,
                "lr": LM_LR,
                "batch_size": 8,
                "distill": distill,
            },
            "export": {"latency_batch_sizes": [8], "latency_seconds": LATENCY_SECONDS},
            "budget": {"max_runtime_s": 3600.0},
        }
    )


def _run(name: str, spec: JobSpec, root: Path) -> dict[str, Any]:
    from core.job import run_job

    started = time.perf_counter()
    output = run_job(spec, out_dir=root / name / "art", work_dir=root / name / "work", device="cpu")
    manifest = dict(output.manifest)
    manifest["bench"] = {
        "wall_s": time.perf_counter() - started,
        "load_average": os.getloadavg(),
        "epochs": spec.finetune.final_epochs,
        "distill": spec.finetune.distill,
        # validation metric straight after the cut, before recovery (the last row before the
        # final one: a width or depth job's one step, a one-shot job's last block)
        "cut_metric": float(
            [step for step in output.outcome.result.steps if step.decision != "final"][-1].metric
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(manifest, indent=1, default=str))
    print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return manifest


def run_lm(only: list[str] | None) -> None:
    from bench.llm_text import bpe_tokenizer

    articles = bbc_articles()
    raw = bpe_tokenizer([], 2048)
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp:
        root = Path(tmp)
        model = _lm_model_dir(root / "lm")
        data = {
            split: _write_jsonl(
                root / f"{split}.jsonl",
                _lm_windows(
                    raw, articles.train if split == "train" else articles.held, count, seed
                ),
            )
            for seed, (split, count) in enumerate(LM_SPLITS.items())
        }
        for name, granularity, target, distill in LM_JOBS:
            if only and name not in only:
                continue
            _run(f"lm-{name}", _lm_spec(model, data, granularity, target, distill), root)
            render()


def run_minilm() -> None:
    from bench.llm_minilm import MiniLMSettings
    from bench.llm_text import TOPICS

    directory = CACHE / MiniLMSettings().key()
    if not (directory / "training.json").exists():
        raise SystemExit("the fine-tuned MiniLM is not cached: run bench/llm.py --part minilm")
    articles = bbc_articles()
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp:
        root = Path(tmp)
        # the corpus is ordered by topic: strided picks keep every topic in every split
        step = max(1, len(articles.train) // MINILM_TRAIN)
        train = list(zip(articles.train, articles.train_labels, strict=True))[::step]
        held = list(zip(articles.held, articles.held_labels, strict=True))
        parts = {
            "train": train[:MINILM_TRAIN],
            "val": held[1::4],
            "test": held[0::2],
        }
        data = {
            split: _write_jsonl(
                root / f"{split}.jsonl",
                [{"text": text, "label": TOPICS[label]} for text, label in rows],
            )
            for split, rows in parts.items()
        }
        task = {"kind": "text-classification", "data": data, "max_length": MINILM_LENGTH}
        width = {
            "granularity": "width",
            "target_sparsity": 0.3,
            # half of MiniLM's parameters are the word embeddings: 30 % of the whole
            # model is only reachable with the hidden size shrinking too
            "hidden": True,
            "max_metric_drop": 0.05,
            "calibration_samples": 32,
        }
        wanda_24 = {
            "method": "wanda",
            "granularity": "2:4",
            "target_sparsity": 0.5,
            "max_metric_drop": 0.06,
            "calibration_samples": 64,
        }
        for name, prune, epochs in (
            ("minilm-width-30-distill", width, MINILM_EPOCHS),
            ("minilm-wanda-24-recover", wanda_24, MINILM_RECOVERY_EPOCHS),
        ):
            spec = JobSpec.model_validate(
                {
                    "model": {"hf": directory.as_uri()},
                    "task": task,
                    "prune": prune,
                    "finetune": {
                        "final_epochs": epochs,
                        "lr": 1e-4,
                        "batch_size": 16,
                        "distill": True,
                    },
                    "export": {"latency_batch_sizes": [8], "latency_seconds": LATENCY_SECONDS},
                    "budget": {"max_runtime_s": 3600.0},
                }
            )
            _run(name, spec, root)
            render()


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _latency(manifest: dict[str, Any]) -> tuple[str, float | None, tuple[float, float] | None]:
    """(text, speedup, interval) of the manifest's first latency batch."""
    batch = _first_batch(manifest)
    if batch is None:
        return "not measured", None, None
    speedup = batch.get("speedup")
    interval = batch.get("speedup_interval")
    low_high = (float(interval[0]), float(interval[1])) if interval else None
    dense = (batch.get("dense") or {}).get("median_s")
    pruned = (batch.get("pruned") or {}).get("median_s")
    times = f"{dense * 1e3:.1f} / {pruned * 1e3:.1f} ms, " if dense and pruned else ""
    shown = f"[{low_high[0]:.2f}, {low_high[1]:.2f}]" if low_high else "no interval"
    text = f"{times}{speedup:.2f}x {shown} {batch.get('verdict')}" if speedup else "n/a"
    return text, speedup, low_high


def _first_batch(manifest: dict[str, Any]) -> dict[str, Any] | None:
    batches = manifest.get("latency", {}).get("batches") or []
    return batches[0] if batches else None


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**not met**")


def _lm_rows() -> tuple[list[str], dict[str, Any]]:
    rows = [
        "| job | recovery | params dense → pruned (ratio) | test ppl dense → after cut → "
        "pruned (ratio) | forward 8 x 128 dense / pruned, speedup [95 % CI] verdict | "
        "generate tok/s dense → pruned | wall |",
        "|---|---|---|---|---|---|---|",
    ]
    found: dict[str, Any] = {}
    for name, _, _, _ in LM_JOBS:
        manifest = _load(f"lm-{name}")
        if manifest is None:
            continue
        found[name] = manifest
        sparsity = manifest["sparsity"]
        dense_p, pruned_p = sparsity["params_dense"], sparsity["params_pruned"]
        metrics = manifest["metrics"]
        dense_ppl, pruned_ppl = metrics["dense"]["test"], metrics["pruned"]["test"]
        cut = _cut_metric(manifest)
        latency, _, _ = _latency(manifest)
        generate = (manifest.get("extra") or {}).get("shrink", {}).get("generate")
        gen = (
            f"{generate['tokens_per_s_dense']:.0f} → {generate['tokens_per_s_pruned']:.0f} "
            f"({generate['speedup']:.2f}x)"
            if generate
            else "not measured"
        )
        bench = manifest["bench"]
        recovery = f"{bench['epochs']} ep, " + ("distillation" if bench["distill"] else "task loss")
        rows.append(
            f"| {name} | {recovery} | {dense_p:,} → {pruned_p:,} ({pruned_p / dense_p:.3f}x) | "
            f"{dense_ppl:.1f} → {cut} → {pruned_ppl:.1f} ({pruned_ppl / dense_ppl:.2f}x) | "
            f"{latency} | {gen} | {bench['wall_s']:.0f} s |"
        )
    return rows, found


def _cut_metric(manifest: dict[str, Any]) -> str:
    """The validation metric straight after the cut, before recovery (kept by `_run`)."""
    value = (manifest.get("bench") or {}).get("cut_metric")
    return f"{value:.1f} (val)" if isinstance(value, float) else "—"


def _lm_targets(found: dict[str, Any]) -> list[str]:
    manifest = found.get("width-30-distill")
    if manifest is None:
        return ["- Causal LM width 30 % + distillation: not run."]
    sparsity = manifest["sparsity"]
    params = sparsity["params_pruned"] / sparsity["params_dense"]
    ppl = manifest["metrics"]["pruned"]["test"] / manifest["metrics"]["dense"]["test"]
    _, speedup, interval = _latency(manifest)
    figures_pass = bool(speedup and speedup >= 1.15 and interval and interval[0] > 1.0)
    verdict = (_first_batch(manifest) or {}).get("verdict")
    # the manifest trusts the interval only when the same-model control stayed in its band
    fast = None if speedup is None else figures_pass and verdict == "faster"
    if figures_pass and verdict != "faster":
        judged = (
            f"the ratio and interval pass but the manifest's verdict is {verdict} (the "
            "same-model control left its band), so **not confirmed**"
        )
    else:
        judged = _verdict(fast)
    return [
        f"- Causal LM width 30 % + distillation, parameters <= 0.75x: {params:.3f}x, "
        f"{_verdict(params <= 0.75)}.",
        f"- perplexity <= 2.0x dense: {ppl:.2f}x, {_verdict(ppl <= 2.0)}.",
        f"- forward (8 x 128) >= 1.15x faster with the interval above 1: "
        f"{'not measured' if speedup is None else f'{speedup:.2f}x'}"
        f"{f', interval [{interval[0]:.2f}, {interval[1]:.2f}]' if interval else ''}, "
        f"{judged}.",
    ]


def _lm_reading(found: dict[str, Any]) -> list[str]:
    """Distillation against the task loss per granularity, and why a latency verdict is what
    it is (the same-model control tells how noisy the machine was)."""
    lines = []
    for granularity in ("width-30", "depth-25"):
        plain, distilled = found.get(granularity), found.get(f"{granularity}-distill")
        if plain and distilled:
            a = distilled["metrics"]["pruned"]["test"]
            b = plain["metrics"]["pruned"]["test"]
            lines.append(
                f"- {granularity}: test perplexity {a:.1f} with distillation against {b:.1f} "
                "with the task loss alone, same epochs."
            )
    for name, manifest in found.items():
        missed = (manifest.get("result") or {}).get("target_missed_reason")
        if missed:
            lines.append(f"- {name}: target missed, as the manifest says: {missed}.")
    for name, manifest in found.items():
        batches = manifest.get("latency", {}).get("batches") or []
        if not batches or batches[0].get("verdict") != "inconclusive":
            continue
        batch = batches[0]
        control, interval = batch.get("control_ratio"), batch.get("control_interval")
        if control is not None and interval:
            lines.append(
                f"- {name}: latency inconclusive: the same-model control measured "
                f"{control:.2f}x [{interval[0]:.2f}, {interval[1]:.2f}], outside 0.95-1.05 or "
                "the ratio's interval straddles a band edge: the shared machine's noise is "
                "larger than what the interval can separate."
            )
        else:
            lines.append(f"- {name}: latency inconclusive: too few rounds in the time given.")
    return lines


def _minilm_part(manifest: dict[str, Any] | None) -> list[str]:
    if manifest is None:
        return ["MiniLM on BBC News (width 30 % + distillation): not run in this section."]
    sparsity = manifest["sparsity"]
    params = sparsity["params_pruned"] / sparsity["params_dense"]
    dense_acc = manifest["metrics"]["dense"]["test"]
    pruned_acc = manifest["metrics"]["pruned"]["test"]
    latency, _, _ = _latency(manifest)
    points = 100 * (dense_acc - pruned_acc)
    return [
        "| job | params dense → pruned (ratio) | test accuracy dense → pruned | "
        "forward 8 x 64 dense / pruned, speedup [95 % CI] verdict | wall |",
        "|---|---|---|---|---|",
        f"| minilm width-30 + distillation ({manifest['bench']['epochs']} ep) | "
        f"{sparsity['params_dense']:,} → {sparsity['params_pruned']:,} ({params:.3f}x) | "
        f"{100 * dense_acc:.1f} % → {100 * pruned_acc:.1f} % | {latency} | "
        f"{manifest['bench']['wall_s']:.0f} s |",
        "",
        f"- MiniLM parameters <= 0.8x: {params:.3f}x, {_verdict(params <= 0.8)}.",
        f"- at most 5 points below dense: {points:.1f} points below, {_verdict(points <= 5)}.",
    ]


def _recovered_part(manifest: dict[str, Any] | None) -> list[str]:
    """One-shot Wanda 2:4 followed by the job's masked recovery (distillation)."""
    if manifest is None:
        return ["MiniLM Wanda 2:4 with recovery: not run in this section."]
    dense_acc = manifest["metrics"]["dense"]["test"]
    pruned_acc = manifest["metrics"]["pruned"]["test"]
    cut = manifest["bench"].get("cut_metric")
    points = 100 * (dense_acc - pruned_acc)
    prune, finetune = manifest["spec"]["prune"], manifest["spec"]["finetune"]
    return [
        f"MiniLM, one-shot Wanda 2:4 ({prune['calibration_samples']} calibration articles) and "
        f"then the job's recovery: {_epochs(manifest['bench']['epochs'])} of masked fine-tuning "
        f"with distillation from the dense model (`finetune.final_epochs`, lr {finetune['lr']:g}, "
        f"batch {finetune['batch_size']}), on the same splits as the width job:",
        "",
        "| job | sparsity (file) | test accuracy dense → pruned | points below dense | "
        "val dense → after the cut → after recovery | wall |",
        "|---|---|---|---|---|---|",
        f"| minilm wanda 2:4 + recovery | {manifest['sparsity']['overall']:.3f} | "
        f"{100 * dense_acc:.1f} % → {100 * pruned_acc:.1f} % | {points:.1f} | "
        f"{_percent(manifest['metrics']['dense']['val'])} → {_percent(cut)} → "
        f"{100 * manifest['metrics']['pruned']['val']:.1f} % | "
        f"{manifest['bench']['wall_s']:.0f} s |",
        "",
        f"- Wanda 2:4 at most 6 points below dense, with recovery: {points:.1f} points below, "
        f"{_verdict(points <= 6)}.",
    ]


def _epochs(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _runs(found: dict[str, Any]) -> list[str]:
    """When each kept job ran and the load then (the section may be rendered later)."""
    lines = []
    for name, manifest in found.items():
        load = manifest["bench"]["load_average"]
        lines.append(
            f"`{name}` {manifest['created_at'][:16].replace('T', ' ')} UTC, load "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        )
    return ["Jobs ran (artifact time, load average after the job): " + "; ".join(lines) + "."]


def render() -> None:
    rows, found = _lm_rows()
    minilm = _load("minilm-width-30-distill")
    recovered = _load("minilm-wanda-24-recover")
    ran = {
        **found,
        **({"minilm-width-30-distill": minilm} if minilm else {}),
        **({"minilm-wanda-24-recover": recovered} if recovered else {}),
    }
    load = os.getloadavg()
    body = [
        "## Width and depth pruning through run_job (bench/shrink.py)",
        "",
        "The causal LM of the LLM section (1.1 M-parameter Llama, BPE 2048, trained on BBC News) "
        "is saved with `save_pretrained` and pruned by `core.job.run_job` (the product path). "
        f"Task: causal-lm JSONL of {SEQ}-token windows, {LM_SPLITS['train']} training windows "
        f"from the training articles, {LM_SPLITS['val']} validation and {LM_SPLITS['test']} "
        f"test windows from the held-out articles. Recovery: {LM_EPOCHS} epochs at lr {LM_LR:g}, "
        "batch 8, either the task loss alone or logit distillation from the dense model. "
        "Every figure is read from the job's manifest: parameters counted from the saved "
        "`model.safetensors`, perplexity on the test windows, forward latency at batch 8 x "
        f"{SEQ} tokens (interleaved rounds, bootstrap 95 % interval, same-model control; "
        f"{LATENCY_SECONDS:g} s of timing) and `generate` tokens/s (32 new tokens).",
        "",
        *rows,
        "",
        "Targets:",
        "",
        *_lm_targets(found),
        "",
        "Reading:",
        "",
        *_lm_reading(found),
        "",
        "MiniLM: the BBC News classifier of the LLM section (all-MiniLM-L6-v2 fine-tuned), "
        "width 30 % with the hidden size shrinking too (half its parameters are word "
        f"embeddings), {MINILM_TRAIN} training articles picked with a stride, validation every "
        f"fourth and test every second held-out article, {MINILM_LENGTH} tokens, "
        f"{MINILM_EPOCHS} epochs of distillation at lr 1e-4, batch 16.",
        "",
        *_minilm_part(minilm),
        "",
        *_recovered_part(recovered),
        "",
        *(_runs(ran) if ran else []),
        "",
        "The LM jobs ran with `python bench/shrink.py --part lm` (`--jobs NAME` reruns one), "
        "MiniLM with `--part minilm`; each job's manifest is kept under "
        "bench/.cache/shrink-results/ and `--render` redraws this section from them.",
        "",
        f"Load average when rendered: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(2 cores shared with other work: latency ratios are measured interleaved in one run).",
    ]
    write_section("shrink", "\n".join(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("lm", "minilm", "all"), default="lm")
    parser.add_argument("--jobs", nargs="*", help="only these LM jobs (names as in LM_JOBS)")
    parser.add_argument("--render", action="store_true", help="render the kept results only")
    args = parser.parse_args()
    from core.hf.load import force_offline

    force_offline()  # no network, and a torchvision built for another torch kept out of the way
    if args.render:
        render()
        return
    if args.part in ("lm", "all"):
        run_lm(args.jobs)
    if args.part in ("minilm", "all"):
        run_minilm()


if __name__ == "__main__":
    main()
