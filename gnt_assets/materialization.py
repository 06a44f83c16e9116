"""Metadata every data-producing asset attaches, so the UI and the demo summary agree.

Conventions: ``files`` and ``bytes`` count what the partition wrote; ``preview``
is a quick-look PNG rendered inline by the Dagster UI's markdown view.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import dagster as dg
from upath import UPath

from gnt_assets.core.quicklook import QuickLook


def quicklook_metadata(look: QuickLook, *, title: str = "preview") -> dict[str, dg.MetadataValue]:
    encoded = base64.b64encode(look.png).decode("ascii")
    if look.stretch is not None:  # without it a grey picture says nothing about values
        low, high = look.stretch
        legend = f"\n\nblack {low:.6g} to white {high:.6g} (2nd-98th percentile); transparent: no data"
    elif look.valid_share == 0:
        legend = "\n\nno valid values to draw"
    else:
        legend = "\n\neach band stretched between its 2nd and 98th percentile; transparent: no data"
    metadata: dict[str, dg.MetadataValue] = {
        title: dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded}){legend}"),
        "shape": dg.MetadataValue.text(" x ".join(str(s) for s in look.shape)),
        "valid_share": dg.MetadataValue.float(round(look.valid_share, 6)),
    }
    if look.crs:
        metadata["crs"] = dg.MetadataValue.text(look.crs)
    for name, value in (("min", look.minimum), ("mean", look.mean), ("max", look.maximum)):
        if value is not None:
            metadata[name] = dg.MetadataValue.float(float(value))
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
