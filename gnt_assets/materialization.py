"""Metadata every data-producing asset attaches, so the UI and the demo summary agree.

Conventions: ``files`` and ``bytes`` count what the partition wrote; ``preview``
is a quick-look PNG with its legend, rendered inline by the Dagster UI's markdown view.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import dagster as dg
from upath import UPath

from gnt_assets.core.quicklook import QuickLook, framed_png, legend_lines, summary_line, too_small_note


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

