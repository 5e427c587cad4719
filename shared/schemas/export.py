"""Write the message contract's documents, or check that the checked-in ones are current.

``shared/schemas/json/<type>.schema.json``
    JSON Schema (draft 2020-12) of the body of one message type
    (:mod:`shared.schemas.jsonschema`).

``shared/schemas/asyncapi.json``
    AsyncAPI 3.0.0: channels, messages and who sends or receives what
    (:mod:`shared.schemas.asyncapi`).

Both are generated, never edited by hand. After changing a model or the
topology, run ``make schemas`` (``python -m shared.schemas.export``) and commit
the result; ``python -m shared.schemas.export --check`` writes nothing and
fails while the checked-in files differ from what the code generates, and the
unit tests call :func:`stale_files` to the same end.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from shared.schemas.asyncapi import asyncapi_document
from shared.schemas.jsonschema import JSONObject, json_schema_document
from shared.schemas.messages import MESSAGE_TYPES

SCHEMAS_DIR: Final = Path(__file__).resolve().parent
JSON_SCHEMA_DIR: Final = SCHEMAS_DIR / "json"
ASYNCAPI_PATH: Final = SCHEMAS_DIR / "asyncapi.json"
REPO_ROOT: Final = SCHEMAS_DIR.parents[1]


def _dump(document: JSONObject) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def json_schema_path(type_: str) -> Path:
    return JSON_SCHEMA_DIR / f"{type_}.schema.json"


def render_all() -> dict[Path, str]:
    """Every generated file (absolute path) with the text it should have."""
    files = {
        json_schema_path(type_): _dump(json_schema_document(cls))
        for type_, cls in MESSAGE_TYPES.items()
    }
    files[ASYNCAPI_PATH] = _dump(asyncapi_document())
    return files


def _orphans(expected: Iterable[Path]) -> list[Path]:
    """Schema files of message types that no longer exist."""
    keep = set(expected)
    return sorted(p for p in JSON_SCHEMA_DIR.glob("*.schema.json") if p not in keep)


def staleness() -> dict[Path, str]:
    """Each out-of-date file with why: ``missing``, ``differs`` or ``obsolete``."""
    expected = render_all()
    stale: dict[Path, str] = {}
    for path, text in expected.items():
        if not path.exists():
            stale[path] = "missing"
        elif path.read_text(encoding="utf-8") != text:
            stale[path] = "differs"
    for path in _orphans(expected):
        stale[path] = "obsolete"
    return dict(sorted(stale.items()))


def stale_files() -> list[Path]:
    """The checked-in files that differ from what the code generates (empty when fresh)."""
    return list(staleness())


def write_all() -> list[Path]:
    """Bring the checked-in files up to date; returns the files written or removed."""
    expected = render_all()
    JSON_SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for path, text in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in _orphans(expected):
        path.unlink()
        changed.append(path)
    return changed


def _display(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.schemas.export",
        description="Write the JSON Schemas and the AsyncAPI document of the message contract.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the checked-in files are stale",
    )
    args = parser.parse_args(argv)

    if args.check:
        stale = staleness()
        if stale:
            lines = "\n".join(f"  {_display(path)} ({why})" for path, why in stale.items())
            print(
                f"message contract files are stale:\n{lines}\n"
                "run `make schemas` and commit the result",
                file=sys.stderr,
            )
            return 1
        return 0

    changed = write_all()
    for path in changed:
        print(f"{'removed' if not path.exists() else 'wrote'} {_display(path)}")
    if not changed:
        print("message contract files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
