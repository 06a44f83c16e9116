"""gnt-rasters: the seed's raster_cli commands against a running Dagster webserver.

register/tile/resample/archive/process-tasks/cache-cleanup add partitions and launch runs through
Dagster's GraphQL client (so runs show in the UI); queue-status asks the webserver which runs are queued
or running; list, status --raster-id, cache-stats and config-info read the storage root directly.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from upath import UPath

from gnt_assets.rasters.states import STATES, read_state, read_states

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
# The seed's processing queues and the job that works each one off.
QUEUES = {"validation": "raster_registration_job", "raster_tiling": "raster_tile_job", "resampling": "raster_resample_job"}
RUNS = """
query($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId jobName status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
ACTIVE = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


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


def _grids() -> list:
    from gnt_assets.rasters.assets import GRIDS

    return GRIDS


def _wait(args, run_id: str, timeout_s: float = 3600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _client(args).get_run_status(run_id).value
        if state in FINISHED:
            return state
        time.sleep(2)
    return "TIMEOUT"


def run_partition(args) -> int:
    config = None
    if getattr(args, "methods", None):  # the same methods for every grid's resampled asset
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        config = {"ops": {f"resampled_{spec.name}": {"config": {"methods": methods}} for spec in _grids()}}
    run_id = _launch(args, JOBS[args.command], args.key, config)
    if not getattr(args, "output", None):
        print(json.dumps({"key": args.key, "run_id": run_id}))
        return 0
    state = _wait(args, run_id)  # --output: the seed's synchronous resample, its values written as JSON
    if state != "SUCCESS":
        print(json.dumps({"key": args.key, "run_id": run_id, "status": state}))
        print(f"run {run_id} ended {state}; no output written (see the run in the Dagster UI)", file=sys.stderr)
        return 1
    from gnt_assets.core.atomic import atomic_write_text
    from gnt_assets.io_managers.geoparquet import read_table

    names = [args.grid] if args.grid else [spec.name for spec in _grids()]
    results = {}
    for name in names:
        table = read_table(UPath(args.root) / "rasters" / "resampled" / name / f"{args.key}.parquet")
        results[name] = table.drop(columns="geometry").to_dict(orient="records")
    atomic_write_text(UPath(args.output), json.dumps({"raster": args.key, "run_id": run_id, "grids": results}, default=float))
    print(json.dumps({"key": args.key, "run_id": run_id, "status": state, "output": args.output,
                      "rows": {name: len(rows) for name, rows in results.items()}}))
    return 0


def status(args) -> int:
    if args.raster_id:
        record = read_state(UPath(args.root) / "rasters", args.raster_id)
        if record is None:
            print(f"raster {args.raster_id!r}: no step has run for it under {args.root}", file=sys.stderr)
            return 1
        print(json.dumps({"raster_id": args.raster_id, **record}))
        return 0
    if not args.run_id:
        print("status: give a RUN_ID or --raster-id KEY", file=sys.stderr)
        return 2
    print(json.dumps({"run_id": args.run_id, "status": _client(args).get_run_status(args.run_id).value}))
    return 0


def list_sources(args) -> int:
    from gnt_assets.io_managers.geoparquet import read_table

    path = UPath(args.root) / "rasters" / "catalog.parquet"
    if not path.exists():
        print(f"no catalog at {path}; materialize raster_catalog first", file=sys.stderr)
        return 1
    table = read_table(path)
    if args.status:
        table = table[table.status.isin(args.status)]
    for row in table.itertuples():
        print(f"{row.key}\t{row.status}\t{row.kind}\t{row.crs}\t{row.path}\t{row.error or ''}")
    return 0


def archive(args) -> int:
    config = {"ops": {"archive_sources": {"config": {"keys": args.keys, "restore": args.restore}}}}
    print(json.dumps({"keys": args.keys, "restore": args.restore, "run_id": _launch(args, "raster_archive_job", run_config=config)}))
    return 0


def _runs(args, statuses: list[str]) -> list[dict]:
    result = _client(args)._execute(RUNS, {"filter": {"statuses": statuses}})["runsOrError"]
    if result["__typename"] != "Runs":
        raise SystemExit(f"queue-status: the webserver answered {result.get('message', result['__typename'])}")
    return result["results"]


def queue_status(args) -> int:
    """Per raster job, its queued and running runs (and their partitions), and how many sources are in each state."""
    jobs = sorted({*JOBS.values(), "raster_archive_job", "raster_cache_cleanup"})
    queues = {job: {"queued": [], "running": []} for job in jobs}
    for run in _runs(args, ACTIVE):
        if run["jobName"] in queues:
            partition = next((t["value"] for t in run["tags"] if t["key"] == "dagster/partition"), None)
            queues[run["jobName"]]["queued" if run["status"] in ("QUEUED", "NOT_STARTED") else "running"].append(partition or run["runId"])
    counts = dict.fromkeys(STATES, 0)
    for record in read_states(UPath(args.root) / "rasters").values():
        counts[record["state"]] += 1
    print(json.dumps({"jobs": {job: {**{k: len(v) for k, v in q.items()}, **q} for job, q in queues.items()}, "sources": counts}))
    return 0


def waiting_for(queue: str, root: UPath, grid_names: list[str]) -> list[str]:
    """Sources waiting for a queue's step, oldest first: validation (failed or never registered),
    raster_tiling (validated, no tiles yet), resampling (ready, some grid's result missing)."""
    folder = root / "rasters"
    waiting = []
    for key, record in sorted(read_states(folder).items(), key=lambda item: item[1]["since"]):
        registered = (folder / "sources" / f"{key}.json").exists()
        if queue == "validation":
            wanted = record["state"] == "error" or (record["state"] == "pending" and not registered)
        elif queue == "raster_tiling":
            wanted = registered and record["state"] == "pending"
        else:
            wanted = record["state"] == "ready" and any(
                not (folder / "resampled" / grid / f"{key}.parquet").exists() for grid in grid_names)
        if wanted:
            waiting.append(key)
    return waiting


def process_tasks(args) -> int:
    """The seed's process-tasks: launch up to --max-tasks runs for sources waiting on one queue, skipping
    sources that already have a queued or running run."""
    busy = {t["value"] for run in _runs(args, ACTIVE) for t in run["tags"] if t["key"] == "dagster/partition"}
    keys = [k for k in waiting_for(args.queue, UPath(args.root), [spec.name for spec in _grids()]) if k not in busy]
    launched = [{"key": key, "run_id": _launch(args, QUEUES[args.queue], key)} for key in keys[: args.max_tasks]]
    print(json.dumps({"queue": args.queue, "waiting": len(keys), "launched": launched}))
    return 0


def config_info(args) -> int:
    """The settings this deployment resolves to (no secrets): where rasters come from and go, and the grids."""
    import os

    from gnt_assets.rasters import grids
    from gnt_assets.rasters.assets import STUDY_AREA
    from gnt_assets.rasters.definitions import resource_set

    folder = resource_set("local")["raster_folder"]
    root = UPath(args.root)
    print(json.dumps({
        "storage_root": str(root), "webserver": f"http://{args.host}:{args.port}", "location": args.location,
        "watched_folder": str(folder.folder_path(root)), "registry": str(folder.registry_path(root)),
        "tile_size": folder.tile_size, "memory_limit_mb": folder.memory_limit_mb,
        "grids_file": os.environ.get("GNT_RASTER_GRIDS") or str(grids.REGISTRY), "study_area": STUDY_AREA,
        "grids": [{"name": s.name, "kind": s.kind, "resolution_m": s.resolution_m} for s in _grids()],
        "queues": QUEUES,
    }, default=str))
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
            cmd.add_argument("--output", help="wait for the run and write its values (per grid) to this JSON file")
            cmd.add_argument("--grid", help="with --output: only this grid's values")
        cmd.set_defaults(func=run_partition)
    st = sub.add_parser("status", help="status of a run, or (--raster-id) the state of a source")
    st.add_argument("run_id", nargs="?")
    st.add_argument("--raster-id", help="a source's key: its state, detail and history")
    st.set_defaults(func=status)
    ls = sub.add_parser("list", help="sources in the catalog")
    ls.add_argument("--status", action="append", choices=STATES, help="only sources in this state (repeatable)")
    ls.set_defaults(func=list_sources)
    arc = sub.add_parser("archive", help="retire sources (state archived; outputs moved under rasters/archive/)")
    arc.add_argument("keys", nargs="+")
    arc.add_argument("--restore", action="store_true", help="restore archived sources instead (registered again as new)")
    arc.set_defaults(func=archive)
    sub.add_parser("queue-status", help="queued and running raster runs, and sources per state").set_defaults(func=queue_status)
    proc = sub.add_parser("process-tasks", help="launch runs for sources waiting on one queue")
    proc.add_argument("queue", choices=sorted(QUEUES))
    proc.add_argument("--max-tasks", type=int, default=5)
    proc.set_defaults(func=process_tasks)
    sub.add_parser("config-info", help="the settings this deployment resolves to").set_defaults(func=config_info)
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
