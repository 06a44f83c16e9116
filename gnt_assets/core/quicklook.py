"""Small PNG previews of rasters that explain themselves, so a materialization shows what it made.

A preview is at most ``MAX_SIDE`` pixels on its long side. One band is drawn on a
colour ramp (viridis) stretched between the 2nd and 98th percentile of valid
values; three bands as RGB, each stretched the same way. Nodata is transparent
(alpha 0). Small grids are enlarged by a whole factor (pixels repeated) because
the Dagster UI shows the PNG at its own size. An optional mask is drawn as a red
outline (mine polygons over a tile, for instance).

``QuickLook.png`` is the picture alone; ``framed_png`` adds the legend under it: a
colour bar with values and units (or the RGB stretch per band), what the outline
and the transparent pixels mean. Grids under ``MIN_SIDE`` pixels on a side get a
text note instead of a picture (a 1 x 1 "image" is a square of one colour that
says nothing). ``choropleth`` draws polygons filled by value with the same ramp
and legend.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from PIL import Image, ImageDraw, ImageFont

MAX_SIDE = 256
MIN_SIDE = 8  # below this on either side: a text note, not a picture
OUTLINE_RGB = (255, 32, 32)
LEGEND_WIDTH = 288  # the legend is at least this wide, whatever the picture's width
_FONT_SIZE = 12

# matplotlib's viridis at nine stops (linear interpolation between them is within 1-2 levels of the real ramp)
_VIRIDIS_STOPS = np.array([
    (0x44, 0x01, 0x54), (0x48, 0x28, 0x78), (0x3E, 0x49, 0x89), (0x31, 0x68, 0x8E), (0x26, 0x82, 0x8E),
    (0x1F, 0x9E, 0x89), (0x35, 0xB7, 0x79), (0x6E, 0xCE, 0x58), (0xFD, 0xE7, 0x25),
], dtype="float64")
RAMP = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_VIRIDIS_STOPS)), _VIRIDIS_STOPS[:, c]) for c in range(3)], axis=1,
).round().astype(np.uint8)  # (256, 3): level -> RGB


@dataclass(frozen=True)
class QuickLook:
    png: bytes  # the picture alone (RGBA, nodata alpha 0)
    shape: tuple[int, ...]
    crs: str | None
    valid_share: float
    minimum: float | None
    mean: float | None
    maximum: float | None
    stretch: tuple[float, float] | None = None  # single band: values at the ends of the colour ramp
    variable: str = "band 1"  # what the values are ("T2 daily mean", "band 1 mean per tile")
    units: str | None = None
    band_stretch: tuple[tuple[float, float], ...] = ()  # RGB: the (low, high) of red, green and blue
    band_names: tuple[str, ...] = ()  # RGB: what is drawn as red, green, blue
    outline_label: str | None = None  # what the red outline marks (None: no outline drawn)
    kind: str = "raster"  # "raster", or "choropleth" (shape is then the number of cells)

    @property
    def label(self) -> str:
        """``variable`` with its units: the name the numbers go by."""
        return f"{self.variable}, {self.units}" if self.units else self.variable

    @property
    def too_small(self) -> bool:
        """Fewer than ``MIN_SIDE`` pixels on a side: described in words, not drawn."""
        return self.kind == "raster" and min(self.shape[-2:]) < MIN_SIDE

    def labelled(self, variable: str | None = None, units: str | None = None) -> QuickLook:
        """The same look under another name or units (for previews made in a domain module)."""
        changes = {k: v for k, v in (("variable", variable), ("units", units)) if v is not None}
        return dataclasses.replace(self, **changes) if changes else self


def _valid_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    valid = np.isfinite(array) if np.issubdtype(array.dtype, np.floating) else np.ones(array.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= array != nodata
    return valid


def _decimate(array: np.ndarray, max_side: int) -> np.ndarray:
    """Nearest-neighbour decimation on the last two axes; cheap and never invents values."""
    height, width = array.shape[-2:]
    step = max(1, int(np.ceil(max(height, width) / max_side)))
    return array[..., ::step, ::step]


def _enlarge(image: np.ndarray, max_side: int) -> np.ndarray:
    """Repeat each pixel ``max_side // long side`` times on both axes (never resamples values)."""
    factor = max(1, max_side // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def _stretch_range(values: np.ndarray, valid: np.ndarray) -> tuple[float, float] | None:
    """The 2nd and 98th percentile of the valid values; (v, v) when they are all equal."""
    if not valid.any():
        return None
    low, high = (float(v) for v in np.percentile(values[valid], [2, 98]))
    return low, high


def _levels(values: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """0..255 along the stretch; a constant field sits mid-ramp (its one value is in the legend)."""
    if limits is None:
        return np.zeros(values.shape, np.uint8)
    low, high = limits
    if high <= low:
        return np.full(values.shape, 128, np.uint8)
    scaled = (values.astype("float64") - low) / (high - low)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).astype(np.uint8)


def _boundary(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` 4-neighbour steps of its outside (the image edge counts as outside)."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _png(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def quicklook(
    array: np.ndarray,
    *,
    nodata: float | None = None,
    valid: np.ndarray | None = None,
    crs: str | None = None,
    variable: str | None = None,
    units: str | None = None,
    band_names: Sequence[str] = ("red", "green", "blue"),
    outline: np.ndarray | None = None,
    outline_label: str = "outline of the mask",
    max_side: int = MAX_SIDE,
) -> QuickLook:
    """Preview of a 2-D band or a ``(3, H, W)`` RGB stack.

    :param nodata: value that means no data (NaN always does for floats).
    :param valid: explicit ``(H, W)`` validity, for arrays whose gaps were filled (features with NaN -> 0).
    :param variable: what the values are; its numbers and legend go by this name (default ``band 1`` / RGB).
    :param outline: ``(H, W)`` boolean mask whose boundary is drawn in red, named by ``outline_label``.

    Numbers are computed on the full array; only the picture is decimated.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[0] != 3):
        raise ValueError(f"quicklook takes (H, W) or (3, H, W) arrays, got shape {array.shape}")
    valid_bands = _valid_mask(array, nodata)
    if valid is not None:
        valid = np.asarray(valid, bool).reshape(array.shape[-2:])
        valid_bands = valid_bands & valid
    valid_full = valid_bands.all(axis=0) if array.ndim == 3 else valid_bands
    values_full = array[..., valid_full] if array.ndim == 3 else array[valid_full]
    small = _decimate(array, max_side)
    valid_small = _decimate(valid_full, max_side)
    stretch, band_stretch = None, ()
    if small.ndim == 3:
        ranges = [_stretch_range(band, valid_small) for band in small]
        band_stretch = tuple(r for r in ranges if r is not None)
        rgb = np.dstack([_levels(band, r) for band, r in zip(small, ranges, strict=True)])
    else:
        stretch = _stretch_range(small, valid_small)
        rgb = RAMP[_levels(small, stretch)]
    rgba = np.dstack([np.where(valid_small[..., None], rgb, 0), np.where(valid_small, 255, 0)]).astype(np.uint8)  # nodata (0, 0, 0, 0)
    rgba = _enlarge(rgba, max_side)
    if outline is not None:
        mask = _enlarge(_decimate(np.asarray(outline, bool).reshape(array.shape[-2:]), max_side), max_side)
        edge = _boundary(mask)
        rgba[edge] = (*OUTLINE_RGB, 255)
    has_values = values_full.size > 0
    return QuickLook(
        png=_png(rgba),
        shape=tuple(int(s) for s in array.shape),
        crs=crs,
        valid_share=float(valid_full.mean()) if valid_full.size else 0.0,
        minimum=float(np.min(values_full)) if has_values else None,
        mean=float(np.mean(values_full, dtype="float64")) if has_values else None,
        maximum=float(np.max(values_full)) if has_values else None,
        stretch=stretch,
        variable=variable or ("red, green, blue" if array.ndim == 3 else "band 1"),
        units=units,
        band_stretch=band_stretch,
        band_names=tuple(band_names) if array.ndim == 3 else (),
        outline_label=outline_label if outline is not None else None,
    )


def choropleth(
    geometries: Sequence[shapely.Geometry] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    variable: str,
    units: str | None = None,
    crs: str | None = None,
    size: int = 2 * MAX_SIDE,
) -> QuickLook:
    """Polygons filled by value on the ramp (2nd-98th percentile), cells without a value left transparent."""
    geometries = np.asarray(geometries, dtype=object)
    values = np.asarray(values, dtype="float64")
    finite = np.isfinite(values)
    stretch = _stretch_range(values, finite)
    levels = _levels(values, stretch)
    x0, y0, x1, y1 = shapely.total_bounds(geometries) if len(geometries) else (0.0, 0.0, 1.0, 1.0)
    scale = size / max(x1 - x0, y1 - y0, 1e-12)
    image = Image.new("RGBA", (int((x1 - x0) * scale) + 1, int((y1 - y0) * scale) + 1), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for geom, ok, level in zip(geometries, finite, levels, strict=True):
        if not ok:
            continue
        for part in shapely.get_parts(geom):
            xy = shapely.get_coordinates(part.exterior)
            draw.polygon([((x - x0) * scale, (y1 - y) * scale) for x, y in xy], fill=(*RAMP[level], 255), outline=(0, 0, 0, 80))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    present = values[finite]
    return QuickLook(
        png=buffer.getvalue(), shape=(len(values),), crs=crs, valid_share=float(finite.mean()) if len(values) else 0.0,
        minimum=float(present.min()) if present.size else None, mean=float(present.mean()) if present.size else None,
        maximum=float(present.max()) if present.size else None, stretch=stretch, variable=variable, units=units,
        kind="choropleth",
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def legend_lines(look: QuickLook) -> list[str]:
    """The legend in words (also the alt text and the caption under the picture)."""
    lines = []
    if look.stretch is not None:
        low, high = look.stretch
        if high > low:
            lines.append(f"colour: {look.label}, dark purple {_fmt(low)} to yellow {_fmt(high)} (2nd-98th percentile; beyond: clipped)")
        else:
            lines.append(f"colour: {look.label}, every valid value is {_fmt(low)}")
    elif look.band_stretch:
        ranges = ", ".join(f"{name} {_fmt(lo)}-{_fmt(hi)}" for name, (lo, hi) in zip(look.band_names, look.band_stretch, strict=False))
        lines.append(f"RGB: {look.label}, each stretched 2nd-98th percentile ({ranges})")
    else:
        lines.append(f"{look.label}: no valid values to draw")
    if look.outline_label:
        lines.append(f"red outline: {look.outline_label}")
    if look.valid_share < 1:
        lines.append("transparent: no data" if look.kind == "raster" else "transparent: cells without a value")
    return lines


def summary_line(look: QuickLook) -> str:
    """The numbers, named: ``T2 daily mean, K: min 250.1, mean 271.3, max 290.2 over 98.5% valid pixels``."""
    where = "cells" if look.kind == "choropleth" else "pixels"
    if look.minimum is None:
        return f"{look.label}: no valid {where}"
    return (f"{look.label}: min {_fmt(look.minimum)}, mean {_fmt(look.mean)}, max {_fmt(look.maximum)} "
            f"over {look.valid_share:.1%} valid {where}")


def too_small_note(look: QuickLook) -> str:
    """What a grid too small to draw holds, in words."""
    size = " x ".join(str(s) for s in look.shape[-2:])
    return f"{size} grid, too small for a picture (under {MIN_SIDE} x {MIN_SIDE} pixels). {summary_line(look)}"


def _font(size: int = _FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(text: str, font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def framed_png(look: QuickLook) -> bytes:
    """The picture with its legend underneath: a colour bar with values and units (one band or a
    choropleth), the per-band stretch (RGB), swatches for the outline and for no data."""
    picture = Image.open(io.BytesIO(look.png)).convert("RGBA")
    width = max(picture.width, LEGEND_WIDTH)
    font = _font()
    scratch = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    pad, line_height, bar_height = 8, _FONT_SIZE + 4, 14
    rows: list[tuple[str, object]] = []  # (kind, payload) drawn top to bottom
    if look.stretch is not None and look.stretch[1] > look.stretch[0]:
        caption = f"{look.label} (ends: 2nd and 98th percentile; beyond them clipped)"
        rows += [("bar", look.stretch), *(("text", line) for line in _wrap(caption, font, width - 2 * pad, scratch))]
    elif look.stretch is not None:
        rows.append(("swatch", (tuple(int(c) for c in RAMP[128]), f"{look.label}: {_fmt(look.stretch[0])} at every valid pixel")))
    else:
        rows += [("text", line) for line in _wrap(legend_lines(look)[0], font, width - 2 * pad, scratch)]
    if look.outline_label:
        rows.append(("swatch", (OUTLINE_RGB, f"red outline: {look.outline_label}")))
    if look.valid_share < 1:
        rows.append(("swatch", (None, "transparent: no data" if look.kind == "raster" else "transparent: no value")))
    for line in _wrap(summary_line(look), font, width - 2 * pad, scratch):
        rows.append(("text", line))
    heights = {"bar": bar_height + line_height + 4, "text": line_height, "swatch": line_height + 2}
    legend_height = pad + sum(heights[kind] for kind, _ in rows) + pad
    canvas = Image.new("RGBA", (width, picture.height + legend_height), (0, 0, 0, 0))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, picture.height, width - 1, picture.height + legend_height - 1], fill=(255, 255, 255, 255))
    y = picture.height + pad
    ink = (20, 20, 20, 255)
    for kind, payload in rows:
        if kind == "bar":
            low, high = payload
            bar_width = width - 2 * pad
            ramp = RAMP[np.linspace(0, 255, bar_width).astype(int)]
            bar = np.repeat(ramp[None], bar_height, axis=0)
            canvas.paste(Image.fromarray(np.dstack([bar, np.full(bar.shape[:2], 255, np.uint8)])), (pad, y))
            draw.rectangle([pad - 1, y - 1, pad + bar_width, y + bar_height], outline=ink)  # a frame around, not over, the ramp
            for fraction in (0.0, 0.5, 1.0):
                x = pad + fraction * (bar_width - 1)
                draw.line([x, y + bar_height, x, y + bar_height + 3], fill=ink)
                text = _fmt(low + fraction * (high - low))
                text_width = draw.textlength(text, font=font)
                left = min(max(x - text_width / 2, pad), width - pad - text_width)
                draw.text((left, y + bar_height + 3), text, font=font, fill=ink)
        elif kind == "text":
            draw.text((pad, y), payload, font=font, fill=ink)
        else:
            colour, text = payload
            box = [pad, y + 1, pad + 12, y + 13]
            if colour is None:  # a checkerboard: what shows through a transparent pixel
                for i in range(2):
                    for j in range(2):
                        shade = (200, 200, 200, 255) if (i + j) % 2 else (255, 255, 255, 255)
                        draw.rectangle([pad + 6 * i, y + 1 + 6 * j, pad + 6 * i + 6, y + 7 + 6 * j], fill=shade)
                draw.rectangle(box, outline=ink)
            else:
                draw.rectangle(box, fill=(*colour, 255), outline=ink)
            draw.text((pad + 18, y), text, font=font, fill=ink)
        y += heights[kind]
    return _png(np.asarray(canvas))
