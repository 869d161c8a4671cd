"""Downloads with a size cap: the object's size asked first (HEAD), then a stream that stops at it.

A size the store reports can be wrong or change between the HEAD and the GET, so the stream
counts what it writes and stops one byte past the cap whatever the HEAD said.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import ResourceLimit
from core.limits import human_bytes

CHUNK_BYTES = 1 << 20


def _too_large(uri: str, size: int | str, max_bytes: int) -> ResourceLimit:
    shown = human_bytes(size) if isinstance(size, int) else size
    return ResourceLimit(
        f"{uri!r}: the object is {shown}, over the download limit of {human_bytes(max_bytes)} "
        "(ADAPRUNE_MAX_DATA_BYTES)"
    )


def capped_s3_download(
    client: Any, *, uri: str, bucket: str, key: str, target: Path, max_bytes: int | None
) -> None:
    """Write the object `bucket/key` to `target`, refusing it when over `max_bytes`.

    Raises:
        ResourceLimit: HEAD reports more than `max_bytes`, or the stream goes past it.
        botocore.exceptions.ClientError: as the store answers (404 and the like).
    """
    if max_bytes is None:
        client.download_file(bucket, key, str(target))
        return
    head = client.head_object(Bucket=bucket, Key=key)
    size = int(head.get("ContentLength", 0))
    if size > max_bytes:
        raise _too_large(uri, size, max_bytes)
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    written = 0
    try:
        with target.open("wb") as out:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                written += len(chunk)
                if written > max_bytes:
                    raise _too_large(uri, f"more than {human_bytes(max_bytes)}", max_bytes)
                out.write(chunk)
    finally:
        body.close()
