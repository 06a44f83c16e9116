"""Where the cube lives: a plain zarr store (the shared region API) or an Icechunk repository.

Both backends create the store once (metadata only) with the whole monthly time axis from
2017-01 to the configured end month, rounded up to whole blocks of months; a month beyond it
grows the axis by whole blocks in one step (plain zarr: under the local lock; Icechunk: one
commit), never by single partitions. Each partition writes one cell at its month's own index
(``12 * (y - 2017) + (m - 1)``), so the axis is in time order whatever order months arrive in,
and a store reports which of a region's chunks exist. With Icechunk
each partition's write is one transaction: a failed partition commits nothing, and
concurrent partitions rebase onto each other (disjoint chunks never conflict).
"""

from __future__ import annotations

from dataclasses import dataclass

import xarray as xr
import zarr
from upath import UPath

from gnt_assets.core import zarr_regions
from gnt_assets.core.atomic import local_lock
from gnt_assets.core.zarr_regions import RegionStatus, ZarrLayoutError
from gnt_assets.sentinel.cube import (
    BLOCK_MONTHS,
    DEFAULT_END_MONTH,
    VARIABLE,
    CubeLayout,
    axis_length,
    axis_months,
    axis_problems,
    cube_encoding,
    cube_template,
    month_index,
    month_region,
)

BACKENDS = ("zarr", "icechunk")
COMMIT_TRIES = 50


@dataclass(frozen=True)
class CubeStore:
    path: UPath
    backend: str = "zarr"
    end_month: str = DEFAULT_END_MONTH
    block_months: int = BLOCK_MONTHS

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"sentinel cube {self.path}: unknown backend {self.backend!r}; use one of {BACKENDS}")

    # -- shared by both backends -------------------------------------------------------------
    def ensure(self, layout: CubeLayout, months: list[str], bands: list[str]) -> None:
        """Create the store (metadata only) with the whole time axis, or grow its axis by whole blocks
        to hold ``months``; idempotent, and a no-op when the axis already holds them."""
        length = axis_length(months, self.end_month, self.block_months)
        if self.backend == "icechunk":
            self._icechunk_ensure(layout, length, bands)
            return
        if not zarr_regions.store_exists(self.path):
            zarr_regions.create_store(self.path, cube_template(layout, axis_months(length), bands),
                                      encoding=cube_encoding(layout, bands, self.block_months))
        # One locked step (append_along takes the store's lock): the missing months of whole blocks.
        # with_exact_transform: an append rewrites the group's attributes, which must keep spatial_ref a coordinate.
        zarr_regions.append_along(self.path, "time",
                                  zarr_regions.with_exact_transform(cube_template(layout, axis_months(length), bands)))
        self._check_axis(self.open()["time"].values)

    def _check_axis(self, times) -> None:
        problems = axis_problems(times)
        if problems:
            raise ZarrLayoutError(f"sentinel cube {self.path}: {problems[0]}; the cube predates the fixed monthly "
                                  "axis: move it aside and rebuild it")

    def open(self) -> xr.Dataset:
        """The latest committed cube, lazily."""
        if self.backend == "zarr":
            return zarr_regions.open_store(self.path)
        session = self._repository().readonly_session(branch="main")
        return xr.open_zarr(session.store, consolidated=False, zarr_format=3)

    def region(self, layout: CubeLayout, chunk: str, month: str, store_layout=None) -> dict[str, slice]:
        """The integer region of one cell and month: the month's own index, checked against the stored label."""
        if self.backend == "zarr":
            store_layout = store_layout or zarr_regions.StoreLayout.read(self.path)
            times, dims = store_layout.labels("time"), store_layout.dims[VARIABLE]
        else:
            data = self.open()[VARIABLE]
            times, dims = data["time"].values, data.dims
        index = month_index(month)
        if index >= times.size:
            raise KeyError(f"month {month} chunk {chunk}: the cube {self.path} ends at {str(times[-1])[:7]}; "
                           "extend it (a run including the month does)")
        if str(times[index])[:10] != month[:10]:
            raise ZarrLayoutError(f"month {month} chunk {chunk}: the cube {self.path} holds {str(times[index])[:10]} "
                                  f"at the month's index {index}")
        return month_region(layout, chunk, month, *dims[1:3])

    def write(self, dataset: xr.Dataset, layout: CubeLayout, chunk: str, month: str) -> dict[str, slice]:
        """Write one cell's region for one month at the month's index (idempotent; all or nothing with Icechunk)."""
        if self.backend == "zarr":
            store_layout = zarr_regions.StoreLayout.read(self.path)
            region = self.region(layout, chunk, month, store_layout)
            placed = zarr_regions.write_region(self.path, dataset, store_layout, encoded=True)
            if any((int(placed[d].start), int(placed[d].stop)) != (s.start, s.stop) for d, s in region.items()):
                # the labels' place and the month's index are one and the same
                raise ZarrLayoutError(f"month {month} chunk {chunk}: labels place the region at {placed}, "
                                      f"the month's index at {region}")
            return placed
        region = self.region(layout, chunk, month)
        with self._commit_lock():
            repo = self._repository()
            for _ in range(COMMIT_TRIES):
                session = repo.writable_session("main")
                # Data only, as stored: coordinates are written once by ensure(), so partitions touch disjoint chunks.
                group = zarr.open_group(session.store, mode="r+", zarr_format=3)
                zarr_regions.write_encoded({VARIABLE: group[VARIABLE]}, dataset[[VARIABLE]], region, str(self.path))
                if self._commit(session, f"sentinel {month[:7]} {chunk}", {"chunk": chunk, "month": month}):
                    return region
        raise RuntimeError(f"month {month} chunk {chunk}: Icechunk commit to {self.path} kept conflicting")

    def require_complete(self, region: dict[str, slice], partition: str) -> None:
        """Refuse a region whose write did not finish (zarr: no completion marker; an Icechunk read
        sees only committed transactions, so it never meets a torn region)."""
        if self.backend == "zarr":
            zarr_regions.require_complete(self.path, {partition: region}, what="sentinel cube partition")

    def status(self, region: dict[str, slice]) -> RegionStatus:
        """Chunks of the region present (and their stored bytes); complete once all exist."""
        if self.backend == "zarr":
            return zarr_regions.region_status(self.path, region, [VARIABLE])
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        store = self._repository().readonly_session(branch="main").store
        keys = _chunk_keys(self.open()[VARIABLE], region)
        sizes = [sync(store.get(key, prototype=default_buffer_prototype())) for key in keys]
        present = [len(value) for value in sizes if value is not None]
        # A commit is atomic: every chunk present means the partition's transaction landed.
        return RegionStatus(expected=len(keys), present=len(present), marked=len(present) == len(keys),
                            stored_bytes=sum(present))

    # -- Icechunk ------------------------------------------------------------------------------
    def _storage(self):
        import icechunk

        if self.path.protocol in ("", "file", "local"):
            return icechunk.local_filesystem_storage(self.path.path)
        if self.path.protocol != "s3":
            raise ValueError(f"sentinel cube {self.path}: Icechunk here supports local disk and S3, not {self.path.protocol}")
        options = dict(self.path.storage_options)
        client = options.get("client_kwargs", {})
        endpoint = options.get("endpoint_url") or client.get("endpoint_url")
        bucket, _, prefix = self.path.path.partition("/")
        return icechunk.s3_storage(
            bucket=bucket, prefix=prefix, region=client.get("region_name"), endpoint_url=endpoint,
            allow_http=bool(endpoint and endpoint.startswith("http://")), force_path_style=bool(endpoint),
            access_key_id=options.get("key"), secret_access_key=options.get("secret"),
            from_env=None if options.get("key") else True,
        )

    def _repository(self):
        import icechunk

        try:
            return icechunk.Repository.open_or_create(self._storage())
        except icechunk.IcechunkError:  # another partition created it in between
            return icechunk.Repository.open(self._storage())

    def _commit_lock(self):
        """Local disk has no conditional writes, so commits on one machine take turns; S3 needs no lock."""
        return local_lock(self.path)

    @staticmethod
    def _commit(session, message: str, metadata: dict) -> bool:
        import icechunk

        if not session.has_uncommitted_changes:
            return True
        try:
            session.commit(message, metadata=metadata, rebase_with=icechunk.ConflictDetector(), rebase_tries=COMMIT_TRIES)
        except (icechunk.ConflictError, icechunk.RebaseFailedError):
            return False
        return True

    def _icechunk_ensure(self, layout: CubeLayout, length: int, bands: list[str]) -> None:
        """Creation or growth of the time axis as one commit (conflicting commits retry on the new state)."""
        with self._commit_lock():
            repo = self._repository()
            for _ in range(COMMIT_TRIES):
                session = repo.writable_session("main")
                store = session.store
                try:
                    existing = xr.open_zarr(store, consolidated=False, zarr_format=3)
                except (FileNotFoundError, KeyError):
                    existing = None
                if existing is None:
                    template = zarr_regions.with_exact_transform(cube_template(layout, axis_months(length), bands))
                    template.to_zarr(store, mode="w-", compute=False, encoding=cube_encoding(layout, bands, self.block_months),
                                     consolidated=False, zarr_format=3, safe_chunks=False)
                    message = f"sentinel cube: months {axis_months(length)[0][:7]}..{axis_months(length)[-1][:7]}"
                else:
                    if existing.sizes.get("band") != len(bands) or existing[VARIABLE].shape[1:3] != layout.geobox.shape:
                        raise ZarrLayoutError(f"sentinel cube {self.path}: stored layout {dict(existing.sizes)} differs "
                                              f"from the grid's {layout.geobox.shape} x {len(bands)} bands")
                    self._check_axis(existing["time"].values)
                    have = existing.sizes["time"]
                    if have >= length:
                        return
                    template = zarr_regions.with_exact_transform(cube_template(layout, axis_months(length)[have:], bands))
                    template.to_zarr(store, append_dim="time", compute=False, consolidated=False,
                                     zarr_format=3, safe_chunks=False)
                    message = f"sentinel cube: months {axis_months(length)[have][:7]}..{axis_months(length)[-1][:7]}"
                if self._commit(session, message, {}):
                    return
        raise RuntimeError(f"sentinel cube {self.path}: initialising the Icechunk repository kept conflicting")


def _chunk_keys(data: xr.DataArray, region: dict[str, slice]) -> list[str]:
    """zarr v3 object keys of a region (time, y, x; the band axis is one chunk): shards where the cube is sharded."""
    sizes = (data.encoding.get("shards") or data.encoding["chunks"])[:3]
    ranges = [range(region[dim].start // size, -(-region[dim].stop // size)) for dim, size in zip(data.dims[:3], sizes, strict=False)]
    return [f"{VARIABLE}/c/{t}/{r}/{k}/0" for t in ranges[0] for r in ranges[1] for k in ranges[2]]
