"""Dry-run throughput: a synthetic population export through `cds-service dry-run`.

Writes (or reuses) a Bulk Data export of --patients fictional patients (bench/population.py,
a realistic Ph+ ALL fraction), runs the real command once per --jobs value, checks that the
results are byte-identical across runs, and reports patients/s (evaluation phase and whole
run), patients/s per worker process and the peak RSS of the run's processes.

    python bench/dryrun.py                      # 10,000 patients, --jobs 1 then 2
    python bench/dryrun.py --patients 2000 --jobs 1 2 --export /tmp/pop2k

Ends with one line: `bench-dryrun: patients=… jobs1_pps=… jobs2_pps=… … identical=yes`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.population import write_ndjson_export

AS_OF = "2025-06-01"
# Runs the command, then prints the peak RSS (KiB) and CPU seconds (user + system) of it and
# of every process it waited for (the worker processes included).
_RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); "
    "sys.exit(code)"
)


def _export(folder: Path, patients: int, seed: int) -> dict[str, Any]:
    marker = folder / "population.json"
    if marker.is_file():
        info: dict[str, Any] = json.loads(marker.read_text())
        if info.get("patients") == patients and info.get("seed") == seed:
            return info
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    kinds = write_ndjson_export(folder, patients, seed=seed)
    info = {
        "patients": patients,
        "seed": seed,
        "kinds": dict(sorted(kinds.items())),
        "bytes": sum(p.stat().st_size for p in folder.glob("*.ndjson")),
        "seconds": round(time.perf_counter() - started, 1),
    }
    marker.write_text(json.dumps(info, indent=2))
    return info


def _run(export: Path, out: Path, jobs: int, key: Path) -> dict[str, Any]:
    command = [
        sys.executable, "-c", _RSS_WRAPPER,
        sys.executable, "-m", "cds_service", "dry-run", str(export), "--out", str(out),
        "--jobs", str(jobs), "--as-of", AS_OF, "--key-file", str(key), "--no-progress",
    ]  # fmt: skip
    started = time.perf_counter()
    res = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if res.returncode != 0:
        raise SystemExit(f"dry-run --jobs {jobs} failed:\n{res.stdout}\n{res.stderr}")
    run: dict[str, Any] = json.loads((out / "run.json").read_text())
    run["wall_seconds"] = round(wall, 2)
    rss, cpu = res.stderr.strip().splitlines()[-1].split()
    run["peak_rss_mib"] = round(int(rss) / 1024, 1)
    run["cpu_seconds"] = round(float(cpu), 1)
    run["patients_per_cpu_s"] = round(run["patients"] / float(cpu), 1)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--export", type=Path, help="export folder (kept and reused)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dryrun-") as tmp_name:
        tmp = Path(tmp_name)
        export = args.export or tmp / "export"
        info = _export(export, args.patients, args.seed)
        print(
            f"export: {info['patients']} patients, {info['bytes'] / 1e6:.0f} MB, "
            f"kinds {info['kinds']}"
        )
        key = tmp / "key"
        key.write_text("42" * 32)
        runs = {}
        for jobs in args.jobs:
            out = tmp / f"out-jobs{jobs}"
            runs[jobs] = _run(export, out, jobs, key)
            r = runs[jobs]
            print(
                f"--jobs {jobs}: {r['patients']} patients, evaluate {r['seconds']['evaluate']} s "
                f"({r['patients_per_s']} patients/s, {r['patients_per_s_per_worker']} per "
                f"worker), whole run {r['wall_seconds']} s "
                f"({r['patients'] / r['wall_seconds']:.1f} patients/s), partition "
                f"{r['seconds']['partition']} s, CPU {r['cpu_seconds']} s "
                f"({r['patients_per_cpu_s']} patients per CPU-second), peak RSS "
                f"{r['peak_rss_mib']} MiB, {r['shards']} shards"
            )
        first = tmp / f"out-jobs{args.jobs[0]}"
        identical = all(
            (tmp / f"out-jobs{j}" / name).read_bytes() == (first / name).read_bytes()
            for j in args.jobs
            for name in ("summary.json", "firings.csv")
        )
        summary = json.loads((first / "summary.json").read_text())
        top = sorted(summary["rules"].items(), key=lambda kv: -kv[1]["per_1000"])
        print(
            "firing rate per 1,000 patients: "
            + ", ".join(f"{rule_id} {r['per_1000']:g}" for rule_id, r in top)
        )
    fields = [f"patients={args.patients}"]
    for jobs, r in runs.items():
        fields.append(f"jobs{jobs}_pps={r['patients_per_s']}")
        fields.append(f"jobs{jobs}_pps_per_worker={r['patients_per_s_per_worker']}")
        fields.append(f"jobs{jobs}_patients_per_cpu_s={r['patients_per_cpu_s']}")
    fields.append(f"peak_rss_mib={max(r['peak_rss_mib'] for r in runs.values())}")
    fields.append(f"identical={'yes' if identical else 'NO'}")
    print("bench-dryrun: " + " ".join(fields))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
