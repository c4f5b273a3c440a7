"""`cds-service dry-run INPUT --out OUT_DIR`: how often each rule would fire on a population.

inputs.py streams a Bulk Data export (or a folder of patient Bundles) once into per-patient
shards on disk; shard.py evaluates a shard through the live service's decision path; run.py
runs the shards in this process, in local processes (--jobs) or on a Dask cluster
(--scheduler) and writes summary.json, firings.csv, report.html (report.py) and run.json.
"""

from .run import DEFAULT_ORDERS, DryRunError, DryRunOptions, load_or_create_key, run_dry_run

__all__ = ["DEFAULT_ORDERS", "DryRunError", "DryRunOptions", "load_or_create_key", "run_dry_run"]
