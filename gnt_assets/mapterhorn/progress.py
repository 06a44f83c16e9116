"""Where a source's files stand: the seed's state table, read from the steps' records.

Done comes from the records on disk, failed from the orchestrator (passed in),
pending is the rest; the disk high-water mark is the largest per-file work
folder any step recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gnt_assets.mapterhorn.chain import STEPS, FileWork


@dataclass(frozen=True)
class Progress:
    rows: list[dict]
    high_water_bytes: int
    failed_files: int


def source_progress(root: Path, keys: list[str], failed: dict[str, set[str]]) -> Progress:
    rows, high_water, failed_keys = [], 0, set()
    for step in STEPS:
        records = {key: FileWork(root, key).record(step) for key in keys}
        done = {key for key, record in records.items() if record}
        failing = failed.get(step, set()) - done
        failed_keys |= failing
        high_water = max([high_water, *(r.get("work_bytes", 0) for r in records.values() if r)])
        rows.append({"step": step, "pending": len(keys) - len(done) - len(failing), "done": len(done), "failed": len(failing)})
    return Progress(rows=rows, high_water_bytes=high_water, failed_files=len(failed_keys))
