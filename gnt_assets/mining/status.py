"""Per country-year counts of export states, read from the export ledgers (the seed's ``status``)."""

from __future__ import annotations

from collections import Counter

from upath import UPath

from gnt_assets.mining.exports import read_ledger


def status_rows(root: UPath) -> list[dict]:
    folder = root / "mining" / "exports"
    if not folder.exists():
        return []
    rows = []
    for ledger in sorted(folder.glob("*/*.json")):
        records = read_ledger(ledger)
        counts = Counter("downloaded" if r.downloaded else r.state for r in records)
        errors = "; ".join(f"{r.spec.description}: {r.errors[-1]}" for r in records if r.errors)
        rows.append({"partition": f"{ledger.parent.name}|{ledger.stem}", **counts, "errors": errors})
    return rows
