"""Many files per run: each file's whole chain (download -> unpacked -> georeferenced -> cog ->
bounds -> polygon) runs as one task of a bounded thread pool, and a file that fails fails alone.

A run of hundreds of files pays Dagster's start-up once instead of once per file and step; the
file list and metadata.json of each source are read once per run, not once per file. GDAL,
rasterio and the downloads release the GIL, so threads keep two cores busy without a process per
file. Each step still verifies its output and writes its record before deleting its input (see
``chain``), so a crashed or rerun range resumes file by file where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from gnt_assets.core.errors import InputError, is_transient
from gnt_assets.mapterhorn import steps
from gnt_assets.mapterhorn.catalog import CatalogError, SourceFile, SourceMetadata, list_files, read_metadata, source_of
from gnt_assets.mapterhorn.chain import STEPS, FileWork
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource

# A step's problems as its checks see them (empty: passed); the asset layer passes Dagster's checks in.
Verify = Callable[[str, dict], list[str]]


class CheckFailed(InputError):
    """A step's output failed its blocking check: the file stops there, as a failed blocking check stops a partition."""


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file in a run: the records of the steps it finished, and the failure that stopped it."""

    key: str
    url: str
    records: dict[str, dict] = field(default_factory=dict)
    failure: dict | None = None  # {"key", "step", "error", "transient"}, as written to failed.json
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)  # each step tried, with its verification and retries

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class SourceInputs:
    """A source's file list and metadata, read once per run."""

    entries: dict[str, SourceFile]
    metadata: SourceMetadata | None
    problem: Exception | None = None


def read_sources(resource: MapterhornSourcesResource, keys: list[str]) -> dict[str, SourceInputs]:
    """Each source of ``keys`` parsed once; a source whose list or metadata cannot be read fails its files, not the run."""
    catalog, inputs = resource.catalog(), {}
    for source in sorted({source_of(key) for key in keys}):
        try:
            inputs[source] = SourceInputs({e.key: e for e in list_files(catalog, source)}, read_metadata(catalog, source))
        except (OSError, CatalogError) as error:
            inputs[source] = SourceInputs({}, None, error)
    return inputs


def _calls(resource: MapterhornSourcesResource, work: FileWork, entry: SourceFile, metadata: SourceMetadata) -> dict[str, Callable[[], dict]]:
    return {
        "download": lambda: steps.download_step(work, entry, resource.fetch),
        "unpacked": lambda: steps.unpack_step(work, max_total_bytes=resource.max_unpacked_bytes, max_ratio=resource.max_compression_ratio),
        "georeferenced": lambda: steps.georeference_step(work, metadata.crs, metadata.crs_mode),
        "cog": lambda: steps.cog_step(work),
        "bounds": lambda: steps.bounds_step(work),
        "polygon": lambda: steps.polygon_step(work),
    }


def process_file(resource: MapterhornSourcesResource, key: str, inputs: SourceInputs, *, verify: Verify | None = None,
                 retries: int = 1, backoff_seconds: float = 1.0) -> FileOutcome:
    """The file's chain, step after step; a transient error is retried ``retries`` times for this file
    alone, any other error (or a failed check) is recorded in ``failed.json`` and ends the file."""
    start, work = time.perf_counter(), FileWork(resource.root, key)
    entry = inputs.entries.get(key)
    url = entry.url if entry else ""
    if inputs.problem is not None or entry is None or inputs.metadata is None:
        problem = inputs.problem or CatalogError(f"mapterhorn file {key} is no longer in {source_of(key)}/file_list.txt")
        return FileOutcome(key, url, failure=work.record_failure("download", problem, transient=False),
                           seconds=time.perf_counter() - start)
    records, timings, calls = {}, {}, _calls(resource, work, entry, inputs.metadata)

    def outcome(failure: dict | None) -> FileOutcome:
        return FileOutcome(key, url, records, failure, time.perf_counter() - start, timings)

    for step in STEPS:
        began = time.perf_counter()
        for attempt in range(retries + 1):
            try:
                record = calls[step]()
                break
            except Exception as error:  # one file's failure, whatever it is, is that file's alone
                transient = is_transient(error)
                if transient and attempt < retries:
                    time.sleep(backoff_seconds * 2**attempt)
                    continue
                timings[step] = time.perf_counter() - began
                return outcome(work.record_failure(step, error, transient=transient))
        problems = verify(step, record) if verify else []
        timings[step] = time.perf_counter() - began
        if problems:
            error = CheckFailed(f"mapterhorn file {key}: the {step} check failed: {'; '.join(problems)}")
            return outcome(work.record_failure(step, error, transient=False))
        records[step] = record
    work.clear_failure()
    return outcome(None)


def process_files(resource: MapterhornSourcesResource, keys: list[str], *, workers: int, verify: Verify | None = None,
                  retries: int = 1) -> Iterator[FileOutcome]:
    """Every file of ``keys`` through its chain on ``workers`` threads; outcomes as they finish.

    Even one worker is a thread of its own: the caller (the asset, storing each finished file's event, an
    SQLite commit that mostly waits on fsync) then overlaps the next file's work instead of holding it up."""
    inputs = read_sources(resource, keys)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mapterhorn-file") as pool:
        futures = [pool.submit(process_file, resource, key, inputs[source_of(key)], verify=verify, retries=retries,
                               backoff_seconds=resource.backoff_seconds) for key in keys]
        for future in as_completed(futures):
            yield future.result()
