"""Reading a spec file (YAML or JSON) and turning pydantic errors into one line of text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.contract.errors import AdapruneError


class SpecFileInvalid(AdapruneError):
    """A spec file is missing, is not YAML/JSON, or does not hold a mapping."""

    code = "spec_invalid"


def load_spec_file(path: Path | str) -> dict[str, Any]:
    """Parse a YAML or JSON spec file into a mapping (not yet validated as a JobSpec).

    Raises:
        SpecFileInvalid: the file is missing, unparsable, or not a mapping; the message
            names the file.
    """
    import yaml  # imported here: the API process never reads spec files

    file = Path(path)
    if not file.is_file():
        raise SpecFileInvalid(f"spec file {str(file)!r} not found (it does not exist)")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpecFileInvalid(f"spec file {str(file)!r} is not valid YAML/JSON: {first}") from error
    if not isinstance(data, dict):
        raise SpecFileInvalid(
            f"spec file {str(file)!r} must hold a mapping, not {type(data).__name__}"
        )
    return data


def describe_validation(error: ValidationError, *, limit: int | None = None) -> str:
    """A pydantic error as text: "field.path: message; other.field: message".

    Args:
        error: the validation error.
        limit: name at most this many fields and say how many more there are ("(and 2 more)");
            None names them all.
    """
    items = error.errors()
    shown = items if limit is None else items[:limit]
    parts = [
        f"{'.'.join(str(part) for part in item['loc']) or 'spec'}: {item['msg']}" for item in shown
    ]
    text = "; ".join(parts)
    hidden = len(items) - len(shown)
    return f"{text} (and {hidden} more)" if hidden else text
