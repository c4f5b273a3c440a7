"""The server processes under test: start, wait until ready, read memory and CPU, stop.

The service is started the way an operator starts it, `cds-service serve` (the console script
when installed, else the same entry point through the current interpreter), with
CDS_AUTH=off, a fresh CDS_DATA_DIR, and CDS_ALLOW_HTTP_FHIR=true and CDS_ALLOW_LOOPBACK_FHIR=true
for the loopback FHIR server.
The floor (bench/floor.py) is started the same way with the same uvicorn settings. Memory is
read from /proc/<pid>/status (VmHWM = peak resident set, VmRSS = current), CPU time from
/proc/<pid>/stat (user + system).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 90.0
_TICKS = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A server process did not come up; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_command(source: Path | None = None) -> tuple[list[str], str]:
    """(argv prefix for `cds-service`, how it was found); with `source`, the entry point run
    from that source tree (to measure a proposed change side by side)."""
    script = shutil.which("cds-service")
    if script is not None and source is None:
        return [script], script
    entry = "import sys; from cds_service.cli import main; sys.argv[0] = 'cds-service'; main()"
    return [sys.executable, "-c", entry], f"{sys.executable} -c <cds_service.cli:main>"


@dataclass
class Server:
    """A running server process."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    how: str
    _log: object = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status_kib(self, key: str) -> int | None:
        """A Vm* field of /proc/<pid>/status in KiB (VmHWM, VmRSS), None once gone."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU time consumed so far."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, path: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(
                    f"{self.name} exited with code {self.proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.base + path, timeout=2) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        self.stop()
        raise StartError(
            f"{self.name} not ready after {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _spawn(
    name: str,
    argv: list[str],
    env: Mapping[str, str],
    log_path: Path,
    how: str,
    port: int,
    cwd: Path = REPO,
) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
        )
    return Server(name, proc, port, log_path, how)


def start_service(
    data_dir: Path,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    source: Path | None = None,
    workers: int = 1,
) -> Server:
    """`cds-service serve` on a free loopback port, ready to answer discovery. With `source`,
    the package is imported from that tree instead of this one; `workers` > 1 passes
    `--workers` (the production serve)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(
        {
            "CDS_AUTH": "off",
            "CDS_DATA_DIR": str(data_dir),
            "CDS_ALLOW_HTTP_FHIR": "true",
            "CDS_ALLOW_LOOPBACK_FHIR": "true",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(source or REPO), env.get("PYTHONPATH")) if p
            ),
        }
    )
    env.update(extra_env or {})
    port = free_port()
    prefix, how = service_command(source)
    server = _spawn(
        "service",
        [
            *prefix,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        env,
        log_path,
        how,
        port,
        cwd=source or REPO,
    )
    server.wait_ready("/cds-services")
    return server


def start_floor(log_path: Path) -> Server:
    """bench/floor.py on a free loopback port, ready."""
    port = free_port()
    argv = [sys.executable, str(REPO / "bench" / "floor.py"), "--host", "127.0.0.1"]
    server = _spawn("floor", [*argv, "--port", str(port)], os.environ, log_path, argv[1], port)
    server.wait_ready("/")
    return server
