"""Mining schedules: the janitor checks storage every day."""

import dagster as dg

from gnt_assets.mining.janitor_checks import janitor

janitor_daily = dg.ScheduleDefinition(
    name="janitor_daily",
    job=janitor,
    cron_schedule="30 5 * * *",
    run_config={"ops": {"janitor_sweep": {"config": {"mode": "check"}}}},
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily janitor check of the mining storage; failures reach the alert sinks.",
)
