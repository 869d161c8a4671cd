"""`artifact://JOB_ID/NAME`: a file of one of the tenant's own jobs, named without its storage."""

from __future__ import annotations

import re

ARTIFACT_SCHEME = "artifact"
_ARTIFACT = re.compile(
    r"^artifact://(?P<job>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})$"
)


def parse_artifact_uri(uri: str) -> tuple[str, str]:
    """The (job id, file name) an `artifact://JOB_ID/NAME` URI names.

    Raises:
        ValueError: the URI is not of that form (a lowercase UUID, then one plain file name).
    """
    match = _ARTIFACT.match(uri)
    if match is None:
        raise ValueError(
            f"{uri!r} is not artifact://JOB_ID/NAME (a job id, then one plain file name)"
        )
    return match["job"], match["name"]
