"""The results store of a bench run: one SQLite row per finished episode.

WAL mode and one committed transaction per episode, so a run killed at any moment keeps
every episode it finished and nothing half-written; the primary key ``(cell, seed,
repeat)`` makes a resumed run unable to record an episode twice.

A second table, ``details``, holds what the HTML report shows beyond the numbers (a
learning curve, a transcript with its feedback records), as JSON keyed like the episode
and written in the episode's transaction, so a row and its details land together.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("cell", "TEXT NOT NULL"),  # the cell's key: a hash of (env, kwargs, agent, agent kwargs)
    ("grid", "TEXT NOT NULL"),
    ("env", "TEXT NOT NULL"),
    ("env_kwargs", "TEXT NOT NULL"),  # JSON
    ("agent", "TEXT NOT NULL"),
    ("agent_kwargs", "TEXT NOT NULL"),  # JSON
    ("simulator", "TEXT NOT NULL"),  # "rule", "llm" or a JSON role mapping
    ("seed", "INTEGER NOT NULL"),
    ("repeat", "INTEGER NOT NULL"),
    ("reward", "REAL NOT NULL"),  # the feedback return
    ("true_utility", "REAL NOT NULL"),
    ("success", "INTEGER NOT NULL"),
    ("has_success", "INTEGER NOT NULL"),  # whether the task reports a success notion at all
    ("turns", "INTEGER NOT NULL"),
    ("terminated", "INTEGER NOT NULL"),
    ("truncated", "INTEGER NOT NULL"),
    ("outcomes", "TEXT NOT NULL"),  # JSON: the task's TaskSpec.outcomes at the last step
    ("fallbacks", "INTEGER NOT NULL"),
    ("parse_failures", "INTEGER NOT NULL"),
    ("feedback_error", "TEXT"),
    ("prompt_tokens", "INTEGER NOT NULL"),
    ("completion_tokens", "INTEGER NOT NULL"),
    ("seconds", "REAL NOT NULL"),
    ("fingerprint", "TEXT NOT NULL"),  # short hash of fingerprint_json
    ("fingerprint_json", "TEXT NOT NULL"),
)
NAMES = tuple(name for name, _ in COLUMNS)
JSON_COLUMNS = ("env_kwargs", "agent_kwargs", "outcomes", "fingerprint_json")
# what depends on the machine, not on the episode: left out when runs are compared
VOLATILE = ("seconds",)


class Store:
    """Append-only episode rows in ``path`` (created with its table if new)."""

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed episode survives a crash of the machine too
        cols = ", ".join(f'"{n}" {t}' for n, t in COLUMNS)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS episodes ({cols}, PRIMARY KEY (cell, seed, repeat))")
        self.db.execute("CREATE TABLE IF NOT EXISTS details (cell TEXT NOT NULL, seed INTEGER NOT NULL, "
                        "repeat INTEGER NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, "
                        "PRIMARY KEY (cell, seed, repeat, kind))")
        self.db.commit()

    def done(self) -> set[tuple[str, int, int]]:
        """The ``(cell, seed, repeat)`` keys already recorded."""
        return {(c, int(s), int(r)) for c, s, r in self.db.execute("SELECT cell, seed, repeat FROM episodes")}

    def add(self, row: Mapping[str, Any]) -> bool:
        """Record one episode (and its ``row["details"]``: ``{kind: JSON value}``); False (and
        nothing written) if its key is already there."""
        values = [json.dumps(row[n], sort_keys=True, default=str) if n in JSON_COLUMNS else row[n] for n in NAMES]
        marks = ", ".join("?" for _ in NAMES)
        names = ", ".join(f'"{n}"' for n in NAMES)
        with self.db:  # one transaction per episode
            cur = self.db.execute(f"INSERT OR IGNORE INTO episodes ({names}) VALUES ({marks})", values)
            if cur.rowcount == 1:
                key = (row["cell"], row["seed"], row["repeat"])
                self.db.executemany("INSERT OR IGNORE INTO details VALUES (?, ?, ?, ?, ?)",
                                    [(*key, kind, json.dumps(data, default=str))
                                     for kind, data in (row.get("details") or {}).items()])
        return cur.rowcount == 1

    def details(self, kind: str) -> dict[tuple[str, int, int], Any]:
        """``{(cell, seed, repeat): value}`` of one kind of detail (``curve``, ``transcript``)."""
        return {(c, int(s), int(r)): json.loads(d) for c, s, r, d in self.db.execute(
            "SELECT cell, seed, repeat, data FROM details WHERE kind = ? ORDER BY cell, seed, repeat", (kind,))}

    def rows(self) -> list[dict[str, Any]]:
        """Every row, JSON columns decoded, in key order."""
        names = ", ".join(f'"{n}"' for n in NAMES)
        out = []
        for values in self.db.execute(f"SELECT {names} FROM episodes ORDER BY grid, cell, seed, repeat"):
            row = dict(zip(NAMES, values))
            for n in JSON_COLUMNS:
                row[n] = json.loads(row[n])
            out.append(row)
        return out

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def comparable(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the machine-dependent columns, for comparing two runs."""
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
