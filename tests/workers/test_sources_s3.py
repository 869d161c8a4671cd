"""The worker's private copy of an s3:// `datasets` directory holds its split sub-directories;
a model directory's copy holds only the files directly under its prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.spec import JobSpec
from service.policy import DataPolicy
from service.settings import ApiSettings
from tests.support.s3 import s3_endpoint
from workers.sources import SourceFetcher

__all__ = ["s3_endpoint"]

pytestmark = pytest.mark.integration


def _fetcher(tmp_path: Path) -> SourceFetcher:
    settings = ApiSettings(home=tmp_path / "home", allowed_s3_prefixes="s3://data/{tenant}/")
    # claim, store and storage serve artifact:// references only, which this test has none of
    none: Any = None
    return SourceFetcher(
        claim=none,
        policy=DataPolicy.of(settings, tenant="acme"),
        store=none,
        storage=none,
        cache_dir=tmp_path / "cache",
    )


def test_an_s3_dataset_dict_and_model_are_copied_to_their_own_depths(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="data")
    for key in (
        "acme/bbc/dataset_dict.json",
        "acme/bbc/train/state.json",
        "acme/bbc/validation/state.json",
        "acme/model/config.json",
        "acme/model/onnx/model.onnx",
    ):
        client.put_object(Bucket="data", Key=key, Body=b"{}")
    spec = JobSpec.model_validate(
        {
            "model": {"hf": "s3://data/acme/model/"},
            "task": {"kind": "text-classification", "data": "s3://data/acme/bbc/"},
            "prune": {"method": "wanda", "target_sparsity": 0.5},
        }
    )
    sources = _fetcher(tmp_path).fetch_all(spec)

    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files(sources["s3://data/acme/bbc/"]) == [
        "dataset_dict.json",
        "train/state.json",
        "validation/state.json",
    ]
    assert files(sources["s3://data/acme/model/"]) == ["config.json"]
