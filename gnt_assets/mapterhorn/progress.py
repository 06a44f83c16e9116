"""Where a source's files stand: the seed's state table, read from the steps' records.

Done comes from the records on disk, failed from each file's ``failed.json``
(passed in as key -> the step that failed), pending is the rest. A file counts as
failed only at the step that failed; the later steps are waiting, not broken. The disk high-water mark is the largest per-file work folder any
step recorded.
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


def source_progress(root: Path, keys: list[str], failed: dict[str, str]) -> Progress:
    counts = {step: {"step": step, "pending": 0, "done": 0, "failed": 0} for step in STEPS}
    high_water, failed_keys = 0, set()
    for key in keys:
        work, blocked = FileWork(root, key), False
        for step in STEPS:
            record = work.record(step)
            if record:
                counts[step]["done"] += 1
                high_water = max(high_water, record.get("work_bytes", 0))
            elif not blocked and failed.get(key) == step:
                counts[step]["failed"] += 1
                failed_keys.add(key)
                blocked = True
            else:
                counts[step]["pending"] += 1
                blocked = True
    return Progress(rows=list(counts.values()), high_water_bytes=high_water, failed_files=len(failed_keys))
