"""Metadata every data-producing asset attaches, so the UI and the demo summary agree.

Conventions: ``files`` and ``bytes`` count what the partition wrote; ``preview``
is a quick-look PNG with its legend, rendered inline by the Dagster UI's markdown view.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

import dagster as dg
from upath import UPath

from gnt_assets.core.quicklook import QuickLook, framed_png, legend_lines, summary_line, too_small_note
from gnt_assets.core.stac_catalog import MAPPED_FAMILIES, catalog_output, viewer_url


def quicklook_metadata(
    look: QuickLook, *, title: str = "preview", variable: str | None = None, units: str | None = None,
) -> dict[str, dg.MetadataValue]:
    """The quick look with its legend drawn under it (or a text note for grids under 8 x 8 pixels), its
    legend in words, and shape, CRS, valid share and min/mean/max named after the variable they describe:
    ``min (T2 daily mean, K)``. ``variable``/``units`` rename a look made elsewhere."""
    look = look.labelled(variable, units)
    if look.too_small:
        body = too_small_note(look)
    else:
        encoded = base64.b64encode(framed_png(look)).decode("ascii")
        body = f"![{title}: {look.label}](data:image/png;base64,{encoded})\n\n" + "  \n".join([*legend_lines(look), summary_line(look)])
    metadata: dict[str, dg.MetadataValue] = {
        title: dg.MetadataValue.md(body),
        "shape": dg.MetadataValue.text(" x ".join(str(s) for s in look.shape) + (" cells" if look.kind == "choropleth" else "")),
        "valid_share": dg.MetadataValue.float(round(look.valid_share, 6)),
    }
    if look.crs:
        metadata["crs"] = dg.MetadataValue.text(look.crs)
    for name, value in (("min", look.minimum), ("mean", look.mean), ("max", look.maximum)):
        if value is not None:
            metadata[f"{name} ({look.label})"] = dg.MetadataValue.float(float(value))
    return metadata


def output_metadata(paths: Iterable[UPath]) -> dict[str, dg.MetadataValue]:
    """``files`` and ``bytes`` for what a partition wrote (folders are walked)."""
    files = 0
    size = 0
    for path in paths:
        if path.is_dir():
            for _, info in path.fs.find(path.path, detail=True).items():
                files += 1
                size += int(info.get("size") or 0)
        elif path.exists():
            files += 1
            size += int(path.stat().st_size)
    return {"files": dg.MetadataValue.int(files), "bytes": dg.MetadataValue.int(size)}


def day_span(day: date) -> tuple[datetime, datetime]:
    """A day's STAC datetime (its midnight, UTC)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment, moment


def year_span(year: int) -> tuple[datetime, datetime]:
    """A year's STAC start and end datetimes (UTC)."""
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)


def month_span(month: str) -> tuple[datetime, datetime]:
    """A ``YYYY-MM`` month's STAC start and end datetimes (UTC)."""
    start = datetime.strptime(month[:7], "%Y-%m").replace(tzinfo=UTC)
    following = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start, datetime.fromtimestamp(following.timestamp() - 1, UTC)


def catalog_metadata(
    context: dg.AssetExecutionContext | dg.OpExecutionContext | dg.OutputContext,
    storage_root: UPath | str,
    assets: Mapping[str, UPath | str],
    *,
    family: str | None = None,
    partition: str | None = None,
    footprint: tuple[float, float, float, float] | None = None,
    times: tuple[datetime, datetime] | None = None,
    hints: Mapping[str, Mapping] | None = None,
    title: str | None = None,
) -> dict[str, dg.MetadataValue]:
    """Adds (or replaces) the output's item in the STAC catalog under the storage root
    (``core.stac_catalog.catalog_output``) and returns ``stac_item``, its path, for the materialization, and ``view``,
    its page in the map viewer (``make view``, base ``GNT_VIEWER_URL``) when the viewer draws its family as a map.
    ``assets`` maps asset names to files or stores; ``partition`` defaults to the run's partition key,
    ``family`` to the asset's. Works with an asset's context and with an IO manager's ``OutputContext``.
    A failure to catalog is logged and named in ``stac_item_error``; it never fails the materialization."""
    if partition is None and context.has_partition_key:
        partition = context.partition_key
    try:
        path = catalog_output(storage_root, context.asset_key.to_user_string(), partition, assets, family=family, times=times,
                              hints=hints, footprint=footprint, title=title)
    except Exception as error:  # the data is written and valid: a catalog problem is reported, not a failed partition
        message = f"no STAC item for {context.asset_key.to_user_string()} {partition or ''}: {type(error).__name__}: {error}"
        context.log.warning(message)
        return {"stac_item_error": dg.MetadataValue.text(message)}
    metadata = {"stac_item": dg.MetadataValue.path(str(path))}
    item_family = path.parent.parent.name  # {root}/stac/{family}/{item}/{item}.json
    if item_family in MAPPED_FAMILIES:
        metadata["view"] = dg.MetadataValue.url(viewer_url(item_family, path.stem))
    return metadata
