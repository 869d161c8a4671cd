from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.uri import fetch, fetch_dir


def test_file_uri_returns_the_path_itself(tmp_path: Path) -> None:
    path = tmp_path / "task.npz"
    path.write_bytes(b"data")
    assert fetch(path.as_uri(), cache_dir=tmp_path / "cache") == path
    assert not (tmp_path / "cache").exists()


def test_missing_file_raises_file_not_found_naming_the_uri(tmp_path: Path) -> None:
    uri = (tmp_path / "absent.npz").as_uri()
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        fetch(uri, cache_dir=tmp_path)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fetch(tmp_path.as_uri(), cache_dir=tmp_path)


def test_file_uri_with_a_remote_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local path"):
        fetch("file://example.com/etc/passwd", cache_dir=tmp_path)


@pytest.mark.parametrize("uri", ["http://example.com/t.npz", "ftp://host/t.npz", "t.npz"])
def test_unknown_scheme_is_refused_by_name(tmp_path: Path, uri: str) -> None:
    scheme = uri.split("://")[0] if "://" in uri else ""
    with pytest.raises(ValueError, match=f"scheme '{scheme}'"):
        fetch(uri, cache_dir=tmp_path)


@pytest.mark.integration
def test_s3_uri_is_downloaded_into_the_cache(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="tasks")
    client.put_object(Bucket="tasks", Key="team/mine.npz", Body=b"npz bytes")
    cache = tmp_path / "cache"

    path = fetch("s3://tasks/team/mine.npz", cache_dir=cache)

    assert path.parent == cache
    assert path.name.endswith("mine.npz")
    assert path.read_bytes() == b"npz bytes"
    assert [p.name for p in cache.iterdir()] == [path.name]
    with pytest.raises(FileNotFoundError, match=re.escape("s3://tasks/team/absent.npz")):
        fetch("s3://tasks/team/absent.npz", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [path.name]


@pytest.mark.integration
def test_a_model_directory_comes_from_a_path_or_an_s3_prefix(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    local = tmp_path / "model"
    local.mkdir()
    assert fetch_dir(local.as_uri(), cache_dir=tmp_path / "c") == local
    with pytest.raises(FileNotFoundError, match="no such directory"):
        fetch_dir((tmp_path / "absent").as_uri(), cache_dir=tmp_path / "c")
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    for name, body in (("config.json", b"{}"), ("model.safetensors", b"w"), ("sub/x", b"no")):
        client.put_object(Bucket="models", Key=f"team/bert/{name}", Body=body)
    directory = fetch_dir("s3://models/team/bert/", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    assert (directory / "config.json").read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError, match="no objects under the prefix"):
        fetch_dir("s3://models/team/none/", cache_dir=tmp_path / "cache")


@pytest.mark.integration
def test_a_datasetdict_prefix_is_fetched_with_its_split_sub_prefixes_one_level_down(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="data")
    layout = {
        "dataset_dict.json": b'{"splits": ["train", "validation"]}',
        "train/state.json": b"{}",
        "train/data-00000-of-00001.arrow": b"rows",
        "validation/state.json": b"{}",
        "validation/deeper/x": b"left out",
    }
    for name, body in layout.items():
        client.put_object(Bucket="data", Key=f"team/bbc/{name}", Body=body)
    directory = fetch_dir("s3://data/team/bbc/", cache_dir=tmp_path / "cache", depth=1)
    fetched = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert fetched == [
        "dataset_dict.json",
        "train/data-00000-of-00001.arrow",
        "train/state.json",
        "validation/state.json",
    ]
    assert (directory / "train" / "data-00000-of-00001.arrow").read_bytes() == b"rows"
    # a model directory (depth 0) takes only the files directly under its prefix
    flat = fetch_dir("s3://data/team/bbc/", cache_dir=tmp_path / "flat", depth=0)
    assert [p.name for p in flat.iterdir()] == ["dataset_dict.json"]


class _Listing:
    """A stand-in S3 client that answers list_objects_v2 pages from a fixed set of keys."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, _operation: str) -> _Listing:
        return self

    def paginate(self, *, Bucket: str, Prefix: str, Delimiter: str) -> list[dict[str, object]]:
        contents, prefixes = [], set()
        for key in self.keys:
            if not key.startswith(Prefix):
                continue
            rest = key[len(Prefix) :]
            if Delimiter in rest:
                prefixes.add(Prefix + rest.split(Delimiter)[0] + Delimiter)
            else:
                contents.append({"Key": key})
        return [{"Contents": contents, "CommonPrefixes": [{"Prefix": p} for p in sorted(prefixes)]}]


def test_s3_names_that_could_leave_the_directory_or_clash_are_left_out() -> None:
    from core.uri import _s3_objects

    keys = [
        "p/config.json",
        "p/../escape",
        "p/./dot",
        "p//empty",
        "p/train",  # an object and a sub-prefix of the same name
        "p/train/x",
        "p/val/state.json",
        "p/val/deeper/y",
    ]
    found = _s3_objects(_Listing(keys), "b", "p/", depth=1)
    assert sorted("/".join(relative) for relative, _ in found) == [
        "config.json",
        "train",
        "val/state.json",
    ]
