"""Start `cds-service serve` as a real process on 127.0.0.1 (the console script on PATH, as an
operator would), wait until /healthz answers, and stop it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_command() -> list[str]:
    exe = shutil.which("cds-service")
    return [exe] if exe else [sys.executable, "-c", "from cds_service.cli import main; main()"]


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    base: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def peak_rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            return httpx.get(self.base + "/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_service(
    tmp: Path,
    env: Mapping[str, str],
    args: list[str] = (),  # type: ignore[assignment]
    *,
    scheme: str = "http",
    verify: Any = True,
    log_name: str = "service.log",
) -> Service:
    """`cds-service serve --host 127.0.0.1 --port <free>` with CDS_DATA_DIR under `tmp` and
    `env` on top of a CDS_-free environment; its output goes to `tmp / log_name`."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    full_env.update({"CDS_DATA_DIR": str(tmp / "data"), **env})
    log_path = tmp / log_name
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*service_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    service = Service(proc, f"{scheme}://127.0.0.1:{port}", port, log_path)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(service.log())
        try:
            if httpx.get(service.base + "/healthz", timeout=1, verify=verify).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise RuntimeError("service did not start: " + service.log())
        time.sleep(0.1)


@contextmanager
def running_service(tmp: Path, env: Mapping[str, str], args: list[str] = (),  # type: ignore[assignment]
                    **kwargs: Any) -> Iterator[Service]:
    service = start_service(tmp, env, args, **kwargs)
    try:
        yield service
    finally:
        service.stop()
