"""Where each raster source stands in its life: the seed's states, one small record per source.

pending (known, waiting for its next step) -> validating -> tiling -> indexing -> ready; error
when its last step failed; archived once retired. Each step writes the state it enters, so the
catalog and ``gnt-rasters list --status`` show a source mid-run, and the record keeps the history
of transitions (state and time), newest last.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from upath import UPath

from gnt_assets.core.atomic import atomic_write_text

STATES = ("pending", "validating", "tiling", "indexing", "ready", "error", "archived")
HISTORY_KEPT = 50  # transitions per source: enough to read a source's story, small at any number of runs


def _path(folder: UPath, key: str) -> UPath:
    return folder / "states" / f"{key}.json"


def read_state(folder: UPath, key: str) -> dict | None:
    """The source's record ``{state, detail, since, history}``, or None if no step ever ran for it."""
    path = _path(folder, key)
    return json.loads(path.read_text()) if path.exists() else None


def read_states(folder: UPath) -> dict[str, dict]:
    states = folder / "states"
    return {p.stem: json.loads(p.read_text()) for p in sorted(states.glob("*.json"))} if states.exists() else {}


def set_state(folder: UPath, key: str, state: str, detail: str = "") -> dict:
    """Record that ``key`` entered ``state`` (atomically: a reader sees the old record or the new)."""
    if state not in STATES:
        raise ValueError(f"raster state {state!r} is not one of {', '.join(STATES)}")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    previous = read_state(folder, key) or {"history": []}
    record = {"state": state, "detail": detail, "since": now,
              "history": [*previous["history"], [state, now]][-HISTORY_KEPT:]}
    atomic_write_text(_path(folder, key), json.dumps(record))
    return record


def is_archived(folder: UPath, key: str) -> bool:
    record = read_state(folder, key)
    return record is not None and record["state"] == "archived"


def clear_state(folder: UPath, key: str) -> None:
    """Forget a source's record (restoring an archived source: it is then registered as new)."""
    path = _path(folder, key)
    if path.exists():
        path.unlink()


@contextmanager
def failing_as_error(folder: UPath, key: str) -> Iterator[None]:
    """A step that raises leaves its source in ``error``, with the cause as detail, and re-raises."""
    try:
        yield
    except Exception as error:
        set_state(folder, key, "error", f"{type(error).__name__}: {error}")
        raise


def archive_outputs(folder: UPath, key: str, grid_names: list[str]) -> list[str]:
    """Move a source's tiles and per-grid results under ``archive/<key>/`` (same relative paths); returns what moved."""
    candidates = [folder / "tiles" / key]
    for grid in grid_names:
        results = folder / "resampled" / grid
        candidates += [results / f"{key}.parquet", results / f"{key}.gpkg", results / f"{key}.zarr", results / "cog" / key]
    moved = []
    for path in candidates:
        if path.exists():
            relative = path.relative_to(folder).as_posix()
            target = folder / "archive" / key / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            path.fs.mv(path.path, target.path, recursive=True)
            moved.append(relative)
    return moved
