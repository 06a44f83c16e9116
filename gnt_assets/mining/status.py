"""Per country-year counts of export states, read from the export ledgers (the seed's ``status``)."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from upath import UPath

from gnt_assets.mining.exports import ledger_paths, read_ledger

STATES = ("QUEUED", "READY", "RUNNING", "FAILED", "CANCELLED", "COMPLETED", "downloaded")
COLUMNS = ("partition", *STATES, "errors")


def status_table(root: UPath) -> pd.DataFrame:
    """One row per country-year with exports: clusters per state (``downloaded`` = in the zarr region) and errors."""
    rows = []
    for ledger in ledger_paths(root):
        records = read_ledger(ledger)
        counts = Counter("downloaded" if r.downloaded else r.state for r in records)
        errors = "; ".join(f"{r.spec.description}: {r.errors[-1]}" for r in records if r.errors)
        rows.append({"partition": f"{ledger.parent.name}|{ledger.stem}", **{s: counts.get(s, 0) for s in STATES}, "errors": errors})
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(dict.fromkeys(STATES, "int64"))
