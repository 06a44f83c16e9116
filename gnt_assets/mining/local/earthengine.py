"""A local Earth Engine: export tasks with asynchronous states that render into the local Drive folder.

Each poll moves a task one step: READY -> RUNNING -> COMPLETED (the GeoTIFF
appears in the Drive folder then), or FAILED for descriptions listed in
``fail_descriptions`` on their first ``fail_attempts`` attempts. A poll is a
task's status or a listing of every task (the sensor's one listing per tick,
which moves every unfinished task), as time passing on the real service.
Wide exports are sharded like Earth Engine does (``{prefix}-{row:010d}-{col:010d}.tif``).

Masked pixels are written as Earth Engine writes them: 0, unless the request
(:func:`~gnt_assets.mining.exports.export_request`, kept with the task as
submitted) unmasks them to a value; the Drive GeoTIFF's nodata tag is set only
when the request's format options give ``noData``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import shapely
from pydantic import Field
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes, atomic_write_text
from gnt_assets.mining.exports import ExportSpec, TaskListing, TaskState, attempt_of, export_request
from gnt_assets.mining.local.samples import (
    ensure_sample_polygons,
    geotiff_bytes,
    render_composite,
)
from gnt_assets.mining.pipeline import read_polygon_file
from gnt_assets.mining.resources import EarthEngineResource

FAILURE_TEXT = "Earth Engine memory capacity exceeded. (local failure requested by configuration)"


class LocalEarthEngine(EarthEngineResource):
    root: str = Field(description="Folder holding the local task list and Drive folder (the storage root).")
    polygons_path: str | None = Field(default=None, description="Mines drawn into composites; default: the sample file.")
    fail_descriptions: list[str] = Field(default_factory=list, description="Descriptions (substrings) whose tasks fail.")
    fail_attempts: int = Field(default=1, description="How many attempts of those tasks fail before one succeeds.")
    shard_width: int = Field(default=512, description="Exports wider than this many pixels are split into files.")

    def _tasks(self) -> UPath:
        return UPath(self.root) / "local" / "earthengine" / "tasks"

    def drive_path(self) -> UPath:
        return UPath(self.root) / "local" / "drive" / self.drive_folder

    def _load(self, task_id: str) -> dict:
        path = self._tasks() / f"{task_id}.json"
        if not path.exists():
            raise KeyError(f"local Earth Engine has no task {task_id}")
        return json.loads(path.read_text())

    def _save(self, task: dict) -> None:
        atomic_write_text(self._tasks() / f"{task['id']}.json", json.dumps(task))

    def _all(self) -> list[dict]:
        folder = self._tasks()
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []

    def task_listing(self) -> TaskListing:
        """Every task, oldest first. A listing is a poll: each unfinished task moves one step first."""
        tasks = [self._step(task) for task in self._all()]
        tasks.sort(key=lambda t: (t.get("seq", t["attempt"]), t["id"]))
        return TaskListing(TaskState(t["id"], t["description"], t["state"], t.get("error", "")) for t in tasks)

    def submit(self, spec: ExportSpec) -> TaskState:
        """A new task; ``attempt`` (for ``fail_attempts``) is the description's attempt number (``..._a2``)."""
        seq = 1 + sum(t["description"] == spec.description for t in self._all())
        task_id = "L" + hashlib.sha256(f"{spec.description}/{seq}".encode()).hexdigest()[:23].upper()
        attempt = attempt_of(spec.description) + seq - 1
        self._save({"id": task_id, "description": spec.description, "state": "READY", "attempt": attempt, "seq": seq, "spec": spec.__dict__,
                    "request": export_request(spec)})
        return TaskState(task_id, spec.description, "READY")

    def status(self, task_id: str) -> TaskState:
        task = self._step(self._load(task_id))
        return TaskState(task_id, task["description"], task["state"], task.get("error", ""))

    def _step(self, task: dict) -> dict:
        """The task one step further (READY -> RUNNING -> COMPLETED or FAILED), saved; finished ones stay."""
        if task["state"] == "READY":
            task["state"] = "RUNNING"
        elif task["state"] == "RUNNING":
            failing = any(d in task["description"] for d in self.fail_descriptions) and task["attempt"] <= self.fail_attempts
            if failing:
                task["state"], task["error"] = "FAILED", FAILURE_TEXT
            else:
                spec = ExportSpec(**{**task["spec"], "crs_transform": tuple(task["spec"]["crs_transform"])})
                self._render_to_drive(spec, task.get("request", {}))
                task["state"] = "COMPLETED"
        else:
            return task
        self._save(task)
        return task

    def _pixels(self, spec: ExportSpec, request: dict):
        """The composite with masked pixels as Earth Engine writes them: 0 unless the request unmasks them."""
        path = UPath(self.polygons_path) if self.polygons_path else ensure_sample_polygons(UPath(self.root))
        clip = shapely.from_wkt(spec.clip_wkt)
        mines = read_polygon_file(path)
        mines = [g for g in mines.geometry if g is not None and not g.is_empty and g.intersects(clip)]
        pixels = render_composite(spec.geobox, clip, mines, spec.year)
        return np.where(np.isnan(pixels), np.float32(request.get("unmask", 0.0)), pixels)

    def _render_to_drive(self, spec: ExportSpec, request: dict) -> None:
        pixels, geobox = self._pixels(spec, request), spec.geobox
        nodata = request.get("format_options", {}).get("noData")
        starts = list(range(0, spec.width, self.shard_width))
        for start in starts:
            stop = min(start + self.shard_width, spec.width)
            name = spec.description if len(starts) == 1 else f"{spec.description}-{0:010d}-{start:010d}"
            atomic_write_bytes(self.drive_path() / f"{name}.tif", geotiff_bytes(pixels[:, :, start:stop], geobox[:, start:stop], nodata))

    def compute_pixels(self, spec: ExportSpec) -> bytes:
        """computePixels has no format options: masked pixels hold the unmask value (else 0), no nodata tag."""
        return geotiff_bytes(self._pixels(spec, export_request(spec)), spec.geobox, None)
