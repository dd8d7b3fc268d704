"""Saving a suite's rows: one JSON file per run, written the same way by every suite."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


def save_rows(rows: Iterable[Any], path: "str | Path") -> Path:
    """Write ``rows`` (dataclasses or mappings) as a JSON list, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [asdict(r) if is_dataclass(r) else dict(r) if isinstance(r, Mapping) else r for r in rows]
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
