"""Reading a population export once and partitioning it by patient into shards on disk.

INPUT is a folder: an `$export` output (`*.ndjson` / `*.ndjson.gz`, one resource per line,
any file names — the type is read from each line) and/or patient Bundles (`*.json`, a Bundle
of any type or a single resource). Each file is streamed once; each resource of a type the
rules read (the types of the service's own prefetch templates) is appended to the shard of its
patient (`crc32(patient id) mod shards`), as a line `<patient id> TAB <resource JSON>`.
Patient-independent resources (Medication, which medication records reference) go to an
on-disk SQLite table that shard workers read. Nothing holds more than one line, one Bundle
file, or the shard writers' buffers in memory.

Bounded: an NDJSON line longer than `max_line_bytes` is skipped and counted, as is a line that
is not JSON or not a resource; a Bundle file larger than `max_file_bytes` is skipped and
counted. Counts only, and file:line positions, never content.
"""

from __future__ import annotations

import gzip
import re
import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..fhir_input import iter_resources, reference_key

SHARD_TARGET_BYTES = 32 * 1024 * 1024
"""Input bytes per shard: a worker holds about one shard's lines at a time."""
MAX_SHARDS = 1024
MIN_SHARDS = 8
REFERENCE_TYPES = frozenset({"Medication"})
"""Patient-independent types a patient's records may reference (looked up per patient)."""
MAX_PROBLEMS = 20
_PATIENT_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_WRITE_BUFFER = 256 * 1024


@dataclass
class InputStats:
    """What the partitioning read (counts only)."""

    format: str = ""
    files: int = 0
    resources: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    not_read_by_type: Counter[str] = field(default_factory=Counter)
    """Types no rule reads (left out, as a prefetch would leave them out)."""
    without_patient: int = 0
    """Resources of a read type that name no patient (subject / patient) we could resolve."""
    invalid_lines: int = 0
    oversized: int = 0
    skipped_files: int = 0
    patient_resources: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": self.files,
            "resources": self.resources,
            "resources_by_type": dict(sorted(self.by_type.items())),
            "not_read_by_type": dict(sorted(self.not_read_by_type.items())),
            "without_patient": self.without_patient,
            "invalid_lines": self.invalid_lines,
            "oversized": self.oversized,
            "skipped_files": self.skipped_files,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class Partition:
    shards: tuple[Path, ...]
    references: Path
    stats: InputStats


def input_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(NDJSON files, JSON files) of an input folder, in name order."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    ndjson = [p for p in files if p.name.endswith((".ndjson", ".ndjson.gz"))]
    bundles = [p for p in files if p.name.endswith(".json")]
    return ndjson, bundles


def shard_count(total_bytes: int, min_shards: int = MIN_SHARDS) -> int:
    """Enough shards to keep each near SHARD_TARGET_BYTES and every worker busy to the end
    (the count changes nothing in the results: outputs are merged and sorted)."""
    by_size = -(-total_bytes // SHARD_TARGET_BYTES)
    return min(MAX_SHARDS, max(MIN_SHARDS, min_shards, by_size))


def shard_of(patient_id: str, shards: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(patient_id.encode()) % shards


def _patient_of(resource: dict[str, Any], urls: dict[str, str]) -> str | None:
    """The id of the Patient a resource is about, or None."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for name in ("subject", "patient"):
        value = resource.get(name)
        ref = value.get("reference") if isinstance(value, dict) else None
        if not isinstance(ref, str) or not ref:
            continue
        if ref in urls:
            return urls[ref]
        key = reference_key(ref)
        if key and key.startswith("Patient/"):
            return key.split("/", 1)[1]
        return None
    return None


class _Writer:
    """Shard files and the reference table, filled while the input streams by."""

    def __init__(self, work: Path, shards: int, stack: ExitStack) -> None:
        self.paths = tuple(work / f"shard-{i:04d}.tsv" for i in range(shards))
        self.files: list[IO[bytes]] = [
            stack.enter_context(p.open("wb", buffering=_WRITE_BUFFER)) for p in self.paths
        ]
        self.references = work / "references.sqlite3"
        self.db = sqlite3.connect(self.references)
        stack.callback(self.db.close)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE refs (key TEXT PRIMARY KEY, body BLOB NOT NULL)")
        self.db.execute("BEGIN")
        stack.callback(self.db.commit)

    def patient_resource(self, patient_id: str, body: bytes) -> None:
        out = self.files[shard_of(patient_id, len(self.files))]
        out.write(patient_id.encode())
        out.write(b"\t")
        out.write(body)
        out.write(b"\n")

    def reference(self, key: str, body: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO refs VALUES (?, ?)", (key, body))


class Partitioner:
    """Streams every input file once into shards (see the module docstring)."""

    def __init__(
        self, read_types: frozenset[str], *, max_line_bytes: int, max_file_bytes: int
    ) -> None:
        self.read_types = read_types | {"Patient"}
        self.max_line_bytes = max_line_bytes
        self.max_file_bytes = max_file_bytes
        self.stats = InputStats()

    def run(
        self,
        folder: Path,
        work: Path,
        *,
        min_shards: int = MIN_SHARDS,
        on_bytes: Callable[[int], object] | None = None,
    ) -> Partition:
        ndjson, bundles = input_files(folder)
        kinds = [k for k, files in (("ndjson", ndjson), ("bundles", bundles)) if files]
        self.stats.format = "+".join(kinds)
        total = sum(p.stat().st_size for p in (*ndjson, *bundles))
        work.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            writer = _Writer(work, shard_count(total, min_shards), stack)
            for path in ndjson:
                self.stats.files += 1
                self._ndjson(path, writer, on_bytes)
            for path in bundles:
                self.stats.files += 1
                self._bundle(path, writer, on_bytes)
        return Partition(writer.paths, writer.references, self.stats)

    # -- NDJSON ----------------------------------------------------------------------------

    def _open(self, path: Path) -> IO[bytes] | gzip.GzipFile:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rb")
        return path.open("rb")

    def _ndjson(
        self, path: Path, writer: _Writer, on_bytes: Callable[[int], object] | None
    ) -> None:
        with self._open(path) as fh:
            number = 0
            while True:
                line = fh.readline(self.max_line_bytes + 1)
                if not line:
                    break
                number += 1
                if on_bytes is not None:
                    on_bytes(len(line))
                if len(line) > self.max_line_bytes and not line.endswith(b"\n"):
                    self.stats.oversized += 1
                    limit = self.max_line_bytes
                    self.stats.problem(f"{path.name}:{number}: line over {limit} bytes")
                    while line and not line.endswith(b"\n"):  # skip the rest of it
                        line = fh.readline(self.max_line_bytes + 1)
                        if on_bytes is not None:
                            on_bytes(len(line))
                    continue
                body = line.strip()
                if not body:
                    continue
                try:
                    resource = orjson.loads(body)
                except orjson.JSONDecodeError:
                    self._invalid(f"{path.name}:{number}: not JSON")
                    continue
                if not isinstance(resource, dict) or not isinstance(
                    resource.get("resourceType"), str
                ):
                    self._invalid(f"{path.name}:{number}: not a FHIR resource")
                    continue
                self._route(resource, body, writer, {}, None)

    def _invalid(self, where: str) -> None:
        self.stats.invalid_lines += 1
        self.stats.problem(where)

    # -- Bundles ---------------------------------------------------------------------------

    def _bundle(
        self, path: Path, writer: _Writer, on_bytes: Callable[[int], object] | None
    ) -> None:
        size = path.stat().st_size
        if on_bytes is not None:
            on_bytes(size)
        if size > self.max_file_bytes:
            self.stats.skipped_files += 1
            self.stats.problem(f"{path.name}: over {self.max_file_bytes} bytes, skipped")
            return
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            self.stats.skipped_files += 1
            self.stats.problem(f"{path.name}: not JSON, skipped")
            return
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            self.stats.skipped_files += 1
            self.stats.problem(f"{path.name}: not a Bundle or resource, skipped")
            return
        raw_entries = data.get("entry")
        entries: list[Any] = raw_entries if isinstance(raw_entries, list) else []
        urls: dict[str, str] = {}  # Patient fullUrl -> id, for urn:uuid subjects
        full_urls: dict[int, str] = {}  # id(resource) -> its entry's fullUrl
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                continue
            resource, url = entry["resource"], entry.get("fullUrl")
            if not isinstance(url, str):
                continue
            full_urls[id(resource)] = url
            if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
                urls[url] = resource["id"]
        resources = list(iter_resources(data))
        patients = {r.get("id") for r in resources if r.get("resourceType") == "Patient"}
        only = next(iter(patients)) if len(patients) == 1 else None
        for resource in resources:
            url = full_urls.get(id(resource))
            # a one-entry collection keeps the entry's fullUrl, which references may use
            item: dict[str, Any] = (
                {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"fullUrl": url, "resource": resource}],
                }
                if url
                else resource
            )
            self._route(resource, orjson.dumps(item), writer, urls, only)

    # -- both ------------------------------------------------------------------------------

    def _route(
        self,
        resource: dict[str, Any],
        body: bytes,
        writer: _Writer,
        urls: dict[str, str],
        only_patient: Any,
    ) -> None:
        rtype = resource["resourceType"]
        self.stats.resources += 1
        self.stats.by_type[rtype] += 1
        if rtype in REFERENCE_TYPES:
            rid = resource.get("id")
            if isinstance(only_patient, str) and _PATIENT_ID.match(only_patient):
                writer.patient_resource(only_patient, body)  # travels with its Bundle's patient
            elif isinstance(rid, str):
                writer.reference(f"{rtype}/{rid}", body)
            return
        if rtype not in self.read_types:
            self.stats.not_read_by_type[rtype] += 1
            return
        patient = _patient_of(resource, urls)
        if patient is None and isinstance(only_patient, str) and "subject" not in resource:
            patient = only_patient
        if patient is None or not _PATIENT_ID.match(patient):
            self.stats.without_patient += 1
            return
        if rtype == "Patient":
            self.stats.patient_resources += 1
        writer.patient_resource(patient, body)


def read_shard(path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """(patient id, resource JSON lines) for each patient of a shard, in first-seen order."""
    groups: dict[str, list[bytes]] = {}
    with path.open("rb") as fh:
        for line in fh:
            pid, _, body = line.rstrip(b"\n").partition(b"\t")
            groups.setdefault(pid.decode(), []).append(body)
    yield from groups.items()


class References:
    """Read side of the reference table (one per worker process)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)

    def get(self, keys: list[str]) -> list[dict[str, Any]]:
        out = []
        for key in keys:
            row = self.db.execute("SELECT body FROM refs WHERE key = ?", (key,)).fetchone()
            if row is not None:
                out.append(orjson.loads(row[0]))
        return out

    def close(self) -> None:
        self.db.close()
