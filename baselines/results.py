"""What every suite does the same way: play scripted episodes in lockstep, save the rows as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from fbenv.episodes import lockstep_episodes


def save_rows(rows: Iterable[Any], path: "str | Path") -> Path:
    """Write ``rows`` (dataclasses or mappings) as a JSON list, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [asdict(r) if is_dataclass(r) else dict(r) if isinstance(r, Mapping) else r for r in rows]
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def play_lockstep(env_id: str, policy_of: Callable[[Any], Any], seeds: Sequence[int], **make_kwargs: Any) -> list:
    """One discrete-view episode per seed of ``env_id``, all at once (their simulator calls
    batched): ``policy_of(env)`` gives each env's ``(obs, info) -> action``. The envs are closed."""
    envs = [gym.make(env_id, interface="discrete", **make_kwargs) for _ in seeds]
    try:
        return lockstep_episodes(envs, [policy_of(e) for e in envs], list(seeds))
    finally:
        for e in envs:
            e.close()


def print_and_save(
    tables: Sequence[tuple[str, Callable[[], list]]],
    format_table: Callable[[list], str],
    path: "str | Path",
    echo: Callable[[str], None],
    as_row: Callable[[Any], Any] = lambda r: r,
) -> Path:
    """What every suite's ``bench()`` does: for each ``(title, make_rows)``, print the title and
    the rows' table; then save all the rows (through ``as_row``) and say where."""
    rows: list = []
    for k, (title, make_rows) in enumerate(tables):
        echo(("\n" if k else "") + title)
        part = make_rows()
        echo(format_table(part))
        rows += part
    saved = save_rows([as_row(r) for r in rows], path)
    echo(f"\nsaved {saved}")
    return saved
