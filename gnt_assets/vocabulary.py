"""Dagster's vocabulary for a pipeline's assets, declared in one place per pipeline (its ``definitions.py``).

``describe`` adds the pipeline's owner and each asset's kinds, and sets the automation conditions and
freshness policies the pipeline names, without touching the asset bodies. Every asset must be given its
kinds and every named asset must exist, so a new asset cannot slip into the UI without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from gnt_assets.core.errors import InputError

# An unpartitioned roll-up (a status table, a run log, a catalog) refreshed after any partition of what it
# summarizes is materialized, once nothing upstream is still running: a backfill of 1,000 partitions is
# followed by one refresh, not 1,000. Unlike eager(), it does not wait for every upstream partition to exist.
FOLLOWS_ANY_PARTITION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after upstream partitions update")

# The same, and also after an upstream partition fails: a roll-up that lists failures (the raster catalog
# names every file that could not register) must show a failure without waiting for the next success.
FOLLOWS_ANY_PARTITION_OR_FAILURE = (
    (dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.execution_failed().newly_true())).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after upstream partitions update or fail")

# A partitioned asset that follows the same partition of its upstream: eager() for every partition, not only
# the latest time window (catch-up runs fill historical days).
FOLLOWS_SAME_PARTITION = dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()).with_label(
    "after the same upstream partition updates")


class VocabularyError(InputError):
    """A pipeline's declaration names an asset it does not have, or leaves one of its assets without kinds."""


def describe(
    assets: Sequence[dg.AssetsDefinition],
    *,
    owner: str,
    kinds: Mapping[str, set[str]],
    automation: Mapping[str, dg.AutomationCondition] | None = None,
    freshness: Mapping[str, dg.FreshnessPolicy] | None = None,
) -> list[dg.AssetsDefinition]:
    """The assets with ``owner``, their ``kinds`` (asset name -> kinds, added to any the decorator set) and
    the named automation conditions and freshness policies."""
    automation, freshness = dict(automation or {}), dict(freshness or {})
    names = {key.to_user_string() for a in assets for key in a.keys}
    problems = [f"{name}: no kinds declared" for name in sorted(names - set(kinds))]
    problems += [f"{name}: not an asset of this pipeline" for name in sorted((set(kinds) | set(automation) | set(freshness)) - names)]
    if problems:
        raise VocabularyError("; ".join(problems))

    def annotate(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        spec = spec.merge_attributes(owners=[owner] if owner not in spec.owners else [], kinds=kinds[name])
        if name in automation:
            spec = spec.replace_attributes(automation_condition=automation[name])
        if name in freshness:
            spec = spec.replace_attributes(freshness_policy=freshness[name])
        return spec

    return list(dg.map_asset_specs(annotate, assets))
