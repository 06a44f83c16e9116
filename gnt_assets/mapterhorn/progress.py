"""Where a source's files stand: the seed's state table, read from the steps' records.

Done comes from the records on disk, failed from each file's ``failed.json``
(passed in as key -> the step that failed), pending is the rest. A file counts as
failed only at the step that failed; the later steps are waiting, not broken. The disk high-water mark is the largest per-file work folder any
step recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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


STATUS_COLUMNS = ("key", "url", "line", "status", "step", "steps_done", "error", "transient", "cogs", "cog_bytes")


def file_status(root: Path, entries: list) -> pd.DataFrame:
    """One row per listed file (``catalog.SourceFile``): ``status`` done (every step verified), failed or
    pending; ``step`` the step that failed, else the last one done; ``steps_done`` every step with a
    record (the per-step status: the steps are not assets of their own); the error and whether a retry
    may help; the file's COG count and bytes. The per-file status table of a source, for any number of files."""
    rows = []
    for entry in entries:
        work = FileWork(root, entry.key)
        done = [step for step in STEPS if work.record_path(step).exists()]
        failure = None if work.verified() else work.failure()
        cog = work.record("cog") if "cog" in done else None
        status = "done" if work.verified() else "failed" if failure else "pending"
        rows.append({"key": entry.key, "url": entry.url, "line": entry.line, "status": status,
                     "step": failure["step"] if failure else (done[-1] if done else ""), "steps_done": ",".join(done),
                     "error": failure["error"] if failure else "", "transient": bool(failure and failure["transient"]),
                     "cogs": len(cog["names"]) if cog else 0, "cog_bytes": int(cog["bytes"]) if cog else 0})
    return pd.DataFrame(rows, columns=list(STATUS_COLUMNS)).astype({"line": "int64", "cogs": "int64", "cog_bytes": "int64"})
