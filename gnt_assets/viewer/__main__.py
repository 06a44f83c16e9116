"""``make view``: serve the viewer on loopback over the catalog under ``GNT_STORAGE_ROOT`` (default ``./data``).

``GNT_VIEWER_PORT`` (default 8008) is the port; ``GNT_NODE_DIR`` (default ``.gnt/node``) the node tools folder
holding ``maplibre-gl``.
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from gnt_assets.viewer.app import create_app


def main() -> None:
    root = Path(os.environ.get("GNT_STORAGE_ROOT", "./data"))
    if not (root / "stac" / "catalog.json").exists():
        raise SystemExit(f"no catalog at {root}/stac/catalog.json: run `make demo` first (or set GNT_STORAGE_ROOT)")
    port = int(os.environ.get("GNT_VIEWER_PORT", "8008"))
    app = create_app(root, Path(os.environ.get("GNT_NODE_DIR", ".gnt/node")))
    print(f"viewer on http://127.0.0.1:{port}/ over {root.resolve()}/stac", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
