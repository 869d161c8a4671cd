"""bench/gpu.py stays runnable: its smoke mode runs every section on the CPU, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bench/gpu.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_smoke_run_measures_every_section_and_renders_from_its_json(tmp_path: Path) -> None:
    figures = tmp_path / "gpu.json"
    completed = run_script("--smoke", "--device", "cpu", "--no-write", "--json", str(figures))
    assert completed.returncode == 0, completed.stderr
    results = json.loads(figures.read_text())
    for section in (
        "overhead",
        "structured",
        "two_four",
        "two_four_shapes",
        "scoring_memory",
        "selection",
        "jobs_allocated",
    ):
        assert section in results, section
    assert results["selection"]["exact"] is True
    assert results["selection"]["pruned"] == results["selection"]["expected"]
    assert [row["arch"] for row in results["overhead"]] == ["cnn2d", "transformer"]
    assert all(row["ratio"] > 0 for row in results["overhead"])
    # on the CPU the 2:4 kernels are not timed, and the script says why instead of a figure
    assert results["two_four"]["measured"] is False and results["two_four"]["reason"]

    markdown = tmp_path / "benchmarks.md"
    rendered = run_script("--from-json", str(figures), "--benchmarks", str(markdown))
    assert rendered.returncode == 0, rendered.stderr
    text = markdown.read_text()
    assert "<!-- gpu:start -->" in text and "<!-- gpu:end -->" in text
    assert "### Global threshold selection at scale" in text
    assert "Measured: `python bench/gpu.py --smoke" in text


def test_unknown_section_is_refused_with_the_known_names() -> None:
    completed = run_script("--smoke", "--device", "cpu", "--no-write", "--sections", "nope")
    assert completed.returncode == 2
    assert "unknown ['nope']" in completed.stderr and "overhead" in completed.stderr


def test_missing_json_file_is_named_in_the_error(tmp_path: Path) -> None:
    markdown = tmp_path / "benchmarks.md"
    missing = tmp_path / "absent.json"
    completed = run_script("--from-json", str(missing), "--benchmarks", str(markdown))
    assert completed.returncode == 2
    assert f"no such file: {missing}" in completed.stderr
    assert not markdown.exists()
