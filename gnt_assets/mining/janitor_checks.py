"""Janitor checks on the training tiles and transfers, and the ``janitor`` job (check | clean).

The checks run per partition after each materialization; the job sweeps every
recorded partition of every mining stage and storage itself (orphans), which a
per-partition check cannot see. In ``check`` mode the job fails when it finds
anything, so the run-failure alert carries its table; ``clean`` removes orphans
and broken outputs and lists, per asset, the partitions to re-materialize (the
seed's sequential demotion) with the commands that do it; a backfill of those
partitions from that asset downstream repairs them, and ``janitor_repair_sensor``
(off by default) requests exactly those runs after each clean. Dagster OSS
storage cannot wipe single partitions, so Dagster keeps its record until then.
"""

from typing import Literal

import dagster as dg

from gnt_assets.core.packed_tensors import open_packed
from gnt_assets.io_managers.mmap_tensors import tensor_folder
from gnt_assets.mining.exports import without_skipped
from gnt_assets.mining.hpc import HPCTargetResource
from gnt_assets.mining.janitor import (
    STAGE_ASSETS,
    STAGES,
    Finding,
    clean,
    clusters_table,
    demotions,
    reset_for_missing_chunks,
    split_partition,
    sweep,
    tile_findings,
    transfer_findings,
)
from gnt_assets.mining.jobs import RUN_TAGS
from gnt_assets.mining.resources import DriveResource
from gnt_assets.mining.training_assets import mining_hpc_transfer, mining_training_tiles
from gnt_assets.partitions import mining_country_year
from gnt_assets.resources.storage import StorageResource

MAX_LISTED = 50


def _result(findings: list[Finding], severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not findings,
        severity=severity,
        metadata={"problems": len(findings), "details": dg.MetadataValue.json([f.problem for f in findings[:MAX_LISTED]])},
    )


@dg.asset_check(asset=mining_training_tiles, partitions_def=mining_country_year, blocking=True)
def training_tiles_match_clusters(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    """The index holds exactly the tiles the clusters cover (none missing, none extra) and every record
    passes its CRC-32, so no partial tile is presented as complete."""
    partition = context.partition_key
    country, year = split_partition(partition)
    clusters = without_skipped(storage.root_path, country, year, clusters_table(storage.root_path, country))
    return _result(tile_findings(storage.root_path, partition, clusters), dg.AssetCheckSeverity.ERROR)


@dg.asset_check(asset=mining_training_tiles, partitions_def=mining_country_year)
def training_tiles_have_data_and_labels(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    """Soft findings: cluster tiles with no data at all (left out) and this country's mines that touch no tile."""
    attrs = open_packed(tensor_folder(storage.root_path, mining_training_tiles.key, context.partition_key)).attrs
    nan_only, without = attrs.get("nan_only", []), int(attrs.get("mines_without_tile", 0))
    return dg.AssetCheckResult(
        passed=not nan_only and not without,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"nan_only_tiles": dg.MetadataValue.json(nan_only), "mines_without_tile": without},
    )


@dg.asset_check(asset=mining_hpc_transfer, partitions_def=mining_country_year, blocking=True)
def hpc_copy_matches_source(context: dg.AssetCheckExecutionContext, storage: StorageResource, hpc: HPCTargetResource) -> dg.AssetCheckResult:
    """Both files are on the target with the source's size and SHA-256, read back from the target."""
    return _result(transfer_findings(storage.root_path, hpc.root_path(), context.partition_key), dg.AssetCheckSeverity.ERROR)


class JanitorConfig(dg.Config):
    mode: Literal["check", "clean"] = "check"


def _table(findings: list[Finding]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"stage": f.stage, "partition": f.partition or "", "path": f.path, "problem": f.problem}) for f in findings[:500]],
        schema=dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in ("stage", "partition", "path", "problem")]),
    )


@dg.op
def janitor_sweep(
    context: dg.OpExecutionContext, config: JanitorConfig, storage: StorageResource, hpc: HPCTargetResource, drive: DriveResource
) -> dict:
    """Compare Dagster's record of every mining stage with storage; in clean mode repair what can be repaired."""
    owned = {stage: set(context.instance.get_materialized_partitions(dg.AssetKey(STAGE_ASSETS[stage]))) for stage in STAGES}
    findings = sweep(storage.root_path, hpc.root_path(), owned, list_drive_files=drive.list_files)
    restart = demotions(findings)
    rerun = {STAGE_ASSETS[stage]: sorted(p for p, s in restart.items() if s == stage) for stage in STAGES}
    metadata = {"findings": len(findings), "table": _table(findings), "rematerialize": dg.MetadataValue.json(rerun)}
    if config.mode == "check":
        if findings:
            raise dg.Failure(description=f"janitor found {len(findings)} problems in mining storage; run the janitor with mode: clean", metadata=metadata)
        context.add_output_metadata(metadata)
        return {"findings": 0}
    removed = clean(storage.root_path, hpc.root_path(), findings, delete_drive_file=drive.delete)
    reset = reset_for_missing_chunks(storage.root_path, findings)
    for partition in reset:  # exported again first: the sensor requests the region once the new attempts complete
        restart[partition] = "export"
    rerun = {STAGE_ASSETS[stage]: sorted(p for p, s in restart.items() if s == stage) for stage in STAGES}
    metadata |= {"rematerialize": dg.MetadataValue.json(rerun), "reset_exports": dg.MetadataValue.json(reset)}
    commands = [
        f'dagster asset materialize -m gnt_assets.definitions --select "{STAGE_ASSETS[stage]}*" --partition "{partition}"'
        for partition, stage in sorted(restart.items())
    ]
    context.add_output_metadata({**metadata, "removed": dg.MetadataValue.json(removed), "repair_commands": dg.MetadataValue.md("\n".join(f"    {c}" for c in commands))})
    return {"findings": len(findings), "removed": removed, "rematerialize": rerun}


@dg.job(tags=RUN_TAGS, description="The mining janitor: in check mode it reports storage that disagrees with Dagster's record; in clean "
                    "mode it removes orphans and broken outputs and lists the country-years to rebuild.")
def janitor():
    janitor_sweep()


mining_repair_job = dg.define_asset_job(
    "mining_repair_job",
    selection=dg.AssetSelection.assets(*STAGE_ASSETS.values()),
    tags=RUN_TAGS,
    description="Re-materializes a country-year that the janitor's clean mode demoted, from the demoted step downstream.",
)


@dg.sensor(
    job=mining_repair_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Off by default. After each successful janitor run in clean mode, starts the runs that rebuild the "
                "country-years it demoted, from the demoted step downstream. Turn it on to repair unattended.",
)
def janitor_repair_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """After each successful ``janitor`` run in clean mode, request the runs that re-materialize its demoted
    partitions from the demoted asset downstream (the backfill that repairs them). Turn on to repair unattended."""
    after = float(context.cursor or 0)
    runs = context.instance.get_run_records(
        dg.RunsFilter(job_name="janitor", statuses=[dg.DagsterRunStatus.SUCCESS]), order_by="update_timestamp", ascending=True
    )
    known = {key.to_user_string() for key in context.repository_def.asset_graph.get_all_asset_keys()}
    requests, newest = [], after
    for record in runs:
        stamp = record.update_timestamp.timestamp()
        if stamp <= after:
            continue
        newest = max(newest, stamp)
        for event in context.instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
            rerun = event.dagster_event.step_output_data.metadata.get("rematerialize")
            for stage in STAGES:
                for partition in (rerun.value if rerun else {}).get(STAGE_ASSETS[stage], []):
                    selection = [dg.AssetKey(STAGE_ASSETS[s]) for s in STAGES[STAGES.index(stage):] if STAGE_ASSETS[s] in known]
                    country, year = split_partition(partition)
                    requests.append(
                        dg.RunRequest(
                            run_key=f"{record.dagster_run.run_id}:{partition}",
                            partition_key=dg.MultiPartitionKey({"country": country, "year": year}),
                            asset_selection=selection,
                            tags={"gnt/janitor_run": record.dagster_run.run_id},
                        )
                    )
    idle = None if requests else "no janitor run in clean mode demoted anything since the last tick"
    return dg.SensorResult(run_requests=requests, skip_reason=idle, cursor=str(newest))
