"""gnt-rasters: the seed's raster_cli commands against a running Dagster webserver.

register/tile/resample/cache-cleanup add partitions and launch runs through Dagster's GraphQL
client (so runs show in the UI); list and cache-stats read the catalog and result store directly.
"""

import argparse
import json
import sys
from pathlib import Path

from upath import UPath

ADD_PARTITION = """
mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""
JOBS = {"register": "raster_registration_job", "tile": "raster_tile_job", "resample": "raster_resample_job"}


def _client(args):
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient(args.host, port_number=args.port)


def _selector(args) -> dict:
    return {"repositoryLocationName": args.location, "repositoryName": "__repository__"}


def _launch(args, job: str, key: str | None = None, run_config: dict | None = None) -> str:
    tags = {"dagster/partition": key} if key else {}
    return _client(args).submit_job_execution(job, repository_location_name=args.location, repository_name="__repository__",
                                              run_config=run_config or {}, tags=tags)


def register(args) -> int:
    import shutil

    from gnt_assets.core.atomic import atomic_open
    from gnt_assets.core.keys import sanitize_key
    from gnt_assets.rasters.definitions import resource_set

    source = Path(args.path)
    if not source.is_file():
        print(f"{source}: no such raster file", file=sys.stderr)
        return 2
    key = sanitize_key(args.name or source.stem)
    # The watched folder as the deployment configures it (GNT_RASTER_FOLDER), local or fsspec URL.
    folder = resource_set("local")["raster_folder"].folder_path(UPath(args.root))
    folder.mkdir(parents=True, exist_ok=True)
    sidecar = {k: v for k, v in {"kind": args.kind, "name": args.name}.items() if v}
    for suffix in (".yaml", ".yml", ".json"):
        if source.with_suffix(suffix).exists():
            (folder / f"{key}{suffix}").write_bytes(source.with_suffix(suffix).read_bytes())
    if sidecar and not any(source.with_suffix(s).exists() for s in (".yaml", ".yml", ".json")):
        (folder / f"{key}.json").write_text(json.dumps(sidecar))
    # Raster last and atomically: the sensor never sees a half-copied file or one without its sidecar.
    with source.open("rb") as raster, atomic_open(folder / f"{key}{source.suffix.lower()}") as copy:
        shutil.copyfileobj(raster, copy, 16 * 2**20)  # streamed: rasters can be larger than memory
    result = _client(args)._execute(ADD_PARTITION, {"selector": _selector(args), "name": "raster_sources", "key": key})
    outcome = result["addDynamicPartition"]
    if outcome["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
        print(f"adding partition {key!r} failed: {outcome.get('message', outcome['__typename'])}", file=sys.stderr)
        return 1
    print(json.dumps({"key": key, "run_id": _launch(args, JOBS["register"], key)}))
    return 0


def run_partition(args) -> int:
    config = None
    if getattr(args, "methods", None):  # the same methods for every grid's resampled asset
        from gnt_assets.rasters.grids import load_registry

        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        config = {"ops": {f"resampled_{spec.name}": {"config": {"methods": methods}} for spec in load_registry()[1]}}
    print(json.dumps({"key": args.key, "run_id": _launch(args, JOBS[args.command], args.key, config)}))
    return 0


def status(args) -> int:
    print(json.dumps({"run_id": args.run_id, "status": _client(args).get_run_status(args.run_id).value}))
    return 0


def list_sources(args) -> int:
    from gnt_assets.io_managers.geoparquet import read_table

    path = UPath(args.root) / "rasters" / "catalog.parquet"
    if not path.exists():
        print(f"no catalog at {path}; materialize raster_catalog first", file=sys.stderr)
        return 1
    table = read_table(path)
    for row in table.itertuples():
        print(f"{row.key}\t{row.status}\t{row.kind}\t{row.crs}\t{row.path}\t{row.error or ''}")
    return 0


def cache_stats(args) -> int:
    from gnt_assets.rasters.resample import ResultStore

    print(json.dumps(ResultStore(UPath(args.root) / "rasters" / "cache").stats()))
    return 0


def cache_cleanup(args) -> int:
    config = {"ops": {"clean_result_cache": {"config": {"days_old": args.days_old, "min_access": args.min_access}}}}
    print(json.dumps({"run_id": _launch(args, "raster_cache_cleanup", run_config=config)}))
    return 0


def parser() -> argparse.ArgumentParser:
    import os

    main = argparse.ArgumentParser(prog="gnt-rasters", description=__doc__)
    main.add_argument("--host", default="127.0.0.1")
    main.add_argument("--port", type=int, default=3000)
    main.add_argument("--location", default="gnt_assets")
    main.add_argument("--root", default=os.environ.get("GNT_STORAGE_ROOT", "./data"), help="storage root (GNT_STORAGE_ROOT)")
    sub = main.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="copy a raster into the watched folder, add its partition, launch its run")
    reg.add_argument("path")
    reg.add_argument("--name")
    reg.add_argument("--kind", choices=["continuous", "categorical", "count"])
    reg.set_defaults(func=register)
    for name in ("tile", "resample"):
        cmd = sub.add_parser(name, help=f"launch the {JOBS[name]} run for one raster")
        cmd.add_argument("key")
        if name == "resample":
            cmd.add_argument("--methods", help="comma-separated, e.g. mean,max (default: the raster kind's defaults)")
        cmd.set_defaults(func=run_partition)
    st = sub.add_parser("status", help="status of a run")
    st.add_argument("run_id")
    st.set_defaults(func=status)
    sub.add_parser("list", help="sources in the catalog").set_defaults(func=list_sources)
    sub.add_parser("cache-stats", help="result store entries, bytes, hits").set_defaults(func=cache_stats)
    clean = sub.add_parser("cache-cleanup", help="launch the raster_cache_cleanup job")
    clean.add_argument("--days-old", type=float, default=30.0)
    clean.add_argument("--min-access", type=int, default=2)
    clean.set_defaults(func=cache_cleanup)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
