"""The viewer's web app: TiTiler for COG and zarr tiles, GeoJSON of vector outputs, the page and MapLibre.

Everything is served from this machine (no internet at run time): MapLibre GL from the
node tools folder (``make node-tools`` installs ``maplibre-gl`` there), tiles and features
from files under the storage root. A ``url`` parameter is a path relative to the storage
root; anything that resolves outside it is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from rio_tiler.errors import TileOutsideBounds
from starlette.staticfiles import StaticFiles
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory
from titiler.xarray.factory import TilerFactory as XarrayTilerFactory

from gnt_assets.viewer.views import UnknownItem, item_view, list_collections

STATIC = Path(__file__).parent / "static"
MAPLIBRE_DIST = Path("node_modules") / "maplibre-gl" / "dist"


def create_app(storage_root: Path, node_dir: Path) -> FastAPI:
    """The app over the catalog at ``{storage_root}/stac``, MapLibre from ``{node_dir}/node_modules``."""
    root = Path(storage_root).resolve()
    maplibre = Path(node_dir).resolve() / MAPLIBRE_DIST
    if not (maplibre / "maplibre-gl.js").exists():
        raise FileNotFoundError(f"{maplibre}/maplibre-gl.js is missing: run `make node-tools` (npm install of package.json)")

    def inside_root(url: Annotated[str, Query(description="path relative to the storage root")]) -> str:
        path = (root / url).resolve()
        if not path.is_relative_to(root):
            raise HTTPException(403, f"{url} is outside the storage root")
        if not path.exists():
            raise HTTPException(404, f"{url} does not exist under the storage root")
        return str(path)

    app = FastAPI(title="GNT Assets viewer", docs_url=None, redoc_url=None)
    cog = TilerFactory(path_dependency=inside_root, router_prefix="/cog", add_viewer=False)
    zarr = XarrayTilerFactory(path_dependency=inside_root, router_prefix="/md", add_viewer=False)
    app.include_router(cog.router, prefix="/cog")
    app.include_router(zarr.router, prefix="/md")
    add_exception_handlers(app, DEFAULT_STATUS_CODES)

    @app.exception_handler(TileOutsideBounds)
    async def empty_tile(request, error):  # a tile beside the data is empty, not an error
        return Response(status_code=204)

    @app.get("/api/collections")
    def collections() -> JSONResponse:
        return JSONResponse(list_collections(root))

    @app.get("/api/view/{collection}/{item}")
    def view(collection: str, item: str) -> JSONResponse:
        try:
            return JSONResponse(item_view(root, collection, item))
        except UnknownItem as error:
            raise HTTPException(404, str(error)) from error

    @app.get("/api/features")
    def features(url: Annotated[str, Query()], bbox: str | None = None, band: int | None = None, method: str | None = None,
                 value: str | None = None) -> Response:
        """A GeoParquet or GeoPackage as GeoJSON in WGS84: cells of one band and method for resampled grids,
        ``value`` names the column drawn (a tile index's ``mean``), features within ``bbox`` only."""
        import geopandas as gpd

        path = Path(inside_root(url))
        frame = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
        if band is not None and "band" in frame:
            frame = frame[frame["band"] == band]
        if method is not None and "method" in frame:
            frame = frame[frame["method"] == method]
        if value is not None:
            if value not in frame:
                raise HTTPException(400, f"{url} has no column {value!r}")
            frame = frame.assign(value=frame[value])
        frame = frame.to_crs(4326) if frame.crs is not None else frame
        if bbox:
            frame = frame.cx[slice(*map(float, bbox.split(",")[0::2])), slice(*map(float, bbox.split(",")[1::2]))]
        keep = [c for c in ("value", "mine_id", "cell_id") if c in frame]
        frame = frame[[*keep, "geometry"]]
        if "value" in frame:
            frame = frame.assign(value=frame["value"].where(np.isfinite(frame["value"])))
        return Response(frame.to_json(na="null", drop_id=True), media_type="application/geo+json")

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/maplibre", StaticFiles(directory=maplibre), name="maplibre")
    return app
