"""Earth Engine calls of the real service (``earthengine-api``), kept apart from Dagster.

The caller initializes ``ee`` (service account or token) and passes the module in,
so the same code runs against Google or a loopback test server.
"""

from __future__ import annotations

from typing import Any

import shapely

from gnt_assets.mining.exports import COLLECTION, ExportError, ExportSpec, TaskListing, TaskState, export_request
from gnt_assets.mining.regions import BANDS


def landsat_composite(ee: Any, spec: ExportSpec) -> Any:
    """The year's annual composite, seven bands as float, clipped to the cluster's tiles, masked pixels set to
    the spec's nodata (Earth Engine would write them as 0 otherwise)."""
    roi = ee.Geometry(shapely.geometry.mapping(shapely.from_wkt(spec.clip_wkt)), "EPSG:4326", False)
    composite = (
        ee.ImageCollection(COLLECTION)
        .filterDate(f"{spec.year}-01-01", f"{spec.year + 1}-01-01")
        .filterBounds(roi)
        .first()
    )
    return ee.Image(composite).select(list(BANDS)).toFloat().clip(roi).unmask(export_request(spec)["unmask"], False)


def _task(operation: dict) -> TaskState:
    from ee import _cloud_api_utils

    task = _cloud_api_utils.convert_operation_to_task(operation)
    return TaskState(task["id"], task.get("description", ""), task.get("state", "UNKNOWN"), task.get("error_message", ""))


def list_tasks(ee: Any) -> TaskListing:
    """Every task of the project from one listing: ``listOperations`` pages through ``projects/<p>/operations``
    once (500 a page), so a whole sensor tick or run costs one listing, not a request per task or cluster."""
    operations = sorted(ee.data.listOperations(), key=lambda op: op.get("metadata", {}).get("createTime", ""))
    return TaskListing(_task(op) for op in operations)


def submit_export(ee: Any, spec: ExportSpec, folder: str) -> TaskState:
    """``Export.image.toDrive`` on the world grid: EPSG:4326, the grid's crsTransform, exact dimensions.

    A refused request raises :class:`ExportError` naming the export, so the other clusters go on.
    """
    try:
        task = _start_export(ee, spec, folder)
    except ee.EEException as error:
        raise ExportError(f"{spec.description}: Earth Engine refused the export: {error}") from error
    return TaskState(task.id, spec.description, "READY")


def _start_export(ee: Any, spec: ExportSpec, folder: str) -> Any:
    task = ee.batch.Export.image.toDrive(
        image=landsat_composite(ee, spec),
        description=spec.description,
        folder=folder,
        fileNamePrefix=spec.description,
        dimensions=f"{spec.width}x{spec.height}",
        crs="EPSG:4326",
        crsTransform=list(spec.crs_transform),
        maxPixels=int(1e13),
        fileFormat="GeoTIFF",
        formatOptions=dict(export_request(spec)["format_options"]),
    )
    task.start()
    return task


def task_status(ee: Any, task_id: str) -> TaskState:
    """One task's state (``operations.get``), for a task missing from the tick's listing; unknown raises."""
    status = ee.data.getTaskStatus(task_id)[0]
    if status["state"] == "UNKNOWN":
        raise ExportError(f"Earth Engine has no task {task_id}")
    return TaskState(task_id, status.get("description", ""), status["state"], status.get("error_message", ""))


def compute_pixels(ee: Any, spec: ExportSpec) -> bytes:
    """The direct path for small regions: a GeoTIFF from ``computePixels``, no Drive round trip."""
    a, b, c, d, e, f = spec.crs_transform
    grid = {
        "dimensions": {"width": spec.width, "height": spec.height},
        "affineTransform": {"scaleX": a, "shearX": b, "translateX": c, "shearY": d, "scaleY": e, "translateY": f},
        "crsCode": "EPSG:4326",
    }
    try:
        return ee.data.computePixels({"expression": landsat_composite(ee, spec), "fileFormat": "GEO_TIFF", "grid": grid})
    except ee.EEException as error:
        raise ExportError(f"{spec.description}: Earth Engine computePixels failed: {error}") from error
