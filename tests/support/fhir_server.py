"""Start the node test FHIR server (tests/fhir_server/server.mjs) as a real process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SERVER_DIR = Path(__file__).resolve().parent.parent / "fhir_server"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
START_TIMEOUT_SECONDS = 20.0


class FHIRServerStartError(RuntimeError):
    """The node test FHIR server could not be started."""


def _check_installed() -> str:
    node = shutil.which("node")
    if node is None:
        raise FHIRServerStartError("node is not on PATH; the test FHIR server needs Node 20+")
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        raise FHIRServerStartError(
            f"{SERVER_DIR / 'node_modules'} is missing: run npm ci --prefix tests/fhir_server"
        )
    return node


def _read_port(proc: subprocess.Popen[bytes], stderr_path: Path) -> int:
    """Wait for the 'listening 127.0.0.1:PORT' line; fail with the server's stderr otherwise."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(timeout=min(remaining, 0.5)):
                line = proc.stdout.readline().decode("utf-8", "replace").strip()
                if line.startswith("listening 127.0.0.1:"):
                    return int(line.rsplit(":", 1)[1])
                if line or proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
    err = stderr_path.read_text("utf-8", "replace")[-2000:]
    raise FHIRServerStartError(
        f"test FHIR server did not start (exit code {proc.poll()}): {err.strip() or 'no output'}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def running_fhir_server(
    resources: list[dict[str, Any]],
    token: str | None,
    *,
    base_path: str = "",
    page_size: int | None = None,
) -> Iterator[str]:
    """Run the test FHIR server holding `resources`; yield its base URL; stop it afterwards.

    With `token`, every read and search needs `Authorization: Bearer <token>`. The token is
    handed over in the environment, not on the command line.
    """
    node = _check_installed()
    base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
    with tempfile.TemporaryDirectory(prefix="fhir-server-") as tmp:
        data = Path(tmp) / "resources.json"
        data.write_text(json.dumps(resources), "utf-8")
        stderr_path = Path(tmp) / "stderr.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")}
        env.update({"FHIR_SERVER_PORT": "0", "FHIR_SERVER_RESOURCES": str(data)})
        if token is not None:
            env["FHIR_SERVER_TOKEN"] = token
        if base_path:
            env["FHIR_SERVER_BASE_PATH"] = base_path
        if page_size is not None:
            env["FHIR_SERVER_PAGE_SIZE"] = str(page_size)
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [node, str(SERVER_SCRIPT)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        try:
            port = _read_port(proc, stderr_path)
            yield f"http://127.0.0.1:{port}{base_path}"
        finally:
            _stop(proc)
