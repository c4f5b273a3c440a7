"""The demo as a browser sees it: a real headless chromium runs the CDS Hooks sandbox's calls.

A page on another origin (standing in for the sandbox, given to the demo with --sandbox-url)
reads the FHIR server's metadata, discovers the services with the sandbox's signed JWT,
prefetches by POST _search and calls patient-view — the sequence of the sandbox's browser
code — and gets the demo's cards. The same page on an origin the demo does not allow is
blocked by CORS. Debian's chromium, headless, with a fresh profile.
"""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import cds_hooks_sandbox as sbx
from tests.support.browser import FLAGS
from tests.test_demo import _clean_env, _command, _read_until

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = tuple(f for f in FLAGS if not f.startswith("--window-size"))

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>sandbox stand-in</title></head>
<body><pre id="out">running</pre><script>
const C = %(config)s;
const out = {};
async function run() {
  const disc = await fetch(C.discovery, {headers: {Accept: 'application/json',
                                                   Authorization: 'Bearer ' + C.discoveryToken}});
  out.discovery = disc.status;
  const meta = await fetch(C.fhir + '/metadata', {headers: {Accept: 'application/json'}});
  out.metadata = meta.status;
  const svc = (await disc.json()).services.find((s) => s.hook === 'patient-view');
  const prefetch = {};
  for (const [key, template] of Object.entries(svc.prefetch)) {
    const [path, query] = template.replaceAll('{{context.patientId}}', C.patient).split('?');
    const r = query
      ? await fetch(C.fhir + '/' + path + '/_search', {method: 'POST', body: query, headers: {
          'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json+fhir'}})
      : await fetch(C.fhir + '/' + path, {headers: {Accept: 'application/json+fhir'}});
    out['prefetch ' + key] = r.status;
    prefetch[key] = await r.json();
  }
  const call = await fetch(C.service, {method: 'POST', headers: {
      'Content-Type': 'application/json', Accept: 'application/json',
      Authorization: 'Bearer ' + C.serviceToken},
    body: JSON.stringify({hookInstance: C.hookInstance, hook: 'patient-view', fhirServer: C.fhir,
                          context: {patientId: C.patient, userId: 'Practitioner/specialty-1'},
                          prefetch})});
  out.call = call.status;
  out.cards = (await call.json()).cards;
}
run().catch((e) => { out.error = String(e); }).finally(() => {
  document.getElementById('out').textContent = JSON.stringify(out);
  return fetch('/result' + location.pathname, {method: 'POST', body: JSON.stringify(out)});
});
</script></body></html>
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Pages:
    """Serves the stand-in page with a config per path; collects what each page posts."""

    def __init__(self, port: int) -> None:
        self.configs: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                config = pages.configs.get(self.path)
                if config is None:
                    self.send_error(404)
                    return
                body = (PAGE % {"config": json.dumps(config)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = json.loads(self.rfile.read(length) or b"{}")
                pages.results[self.path.removeprefix("/result")] = data
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is needed: apt-get install -y chromium (.ci/run does it)"
    return exe


def _open(url: str, profile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
         "--virtual-time-budget=30000", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Pages, int, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("browser")
    port = _free_port()
    pages = _Pages(port)
    report_path = tmp / "report.json"
    with (tmp / "demo.log").open("wb") as log:
        proc = subprocess.Popen(
            [*_command(), "demo", "--port", "0", "--fhir-port", "0", "--report", str(report_path),
             "--sandbox-url", f"http://localhost:{port}/"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            env=_clean_env(tmp), bufsize=0,
        )  # fmt: skip
    try:
        _read_until(proc, "Serving until Ctrl-C.", 120)
        yield pages, port, json.loads(report_path.read_text("utf-8"))
    finally:
        pages.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _config(report: dict[str, Any], patient: str) -> dict[str, Any]:
    discovery = report["discovery"]
    services = httpx.get(
        discovery, headers={"Authorization": sbx.sandbox_bearer(discovery)}
    ).json()["services"]
    view = next(s for s in services if s["hook"] == "patient-view")
    url = f"{discovery}/{view['id']}"
    return {
        "fhir": report["fhirServer"],
        "discovery": discovery,
        "service": url,
        "patient": patient,
        "discoveryToken": sbx.sandbox_token(discovery),
        "serviceToken": sbx.sandbox_token(url),
        "hookInstance": "1b0c1c52-5a4e-4d0e-8f53-0a9c1e2f3b4d",
    }


def _run_page(
    pages: _Pages, base: str, path: str, config: dict[str, Any], tmp: Path
) -> dict[str, Any]:
    pages.configs[path] = config
    browser = _open(base + path, tmp / f"profile{len(pages.configs)}")
    try:
        deadline = time.monotonic() + 90
        while path not in pages.results and time.monotonic() < deadline:
            if browser.poll() is not None and path not in pages.results:
                time.sleep(0.5)
                break
            time.sleep(0.2)
    finally:
        if browser.poll() is None:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait(10)
    assert path in pages.results, "the page never reported back"
    return pages.results[path]


@pytest.mark.req("208")
def test_a_browser_on_the_sandbox_origin_gets_the_demo_cards(
    setup: tuple[_Pages, int, dict[str, Any]], tmp_path: Path
) -> None:
    pages, port, report = setup
    call = next(c for c in report["calls"] if c["hook"] == "patient-view" and c["cards"])
    result = _run_page(
        pages, f"http://localhost:{port}", "/sandbox", _config(report, call["patient"]), tmp_path
    )
    assert "error" not in result, result
    assert result["metadata"] == 200 and result["discovery"] == 200 and result["call"] == 200
    assert all(v == 200 for k, v in result.items() if k.startswith("prefetch "))
    got = sorted((c["indicator"], c["summary"]) for c in result["cards"])
    assert got == sorted((c["indicator"], c["summary"]) for c in call["cards"])


def test_a_page_on_another_origin_is_blocked_by_cors(
    setup: tuple[_Pages, int, dict[str, Any]], tmp_path: Path
) -> None:
    pages, port, report = setup
    patient = report["patients"][0]["id"]
    # 127.0.0.1:<port> is another origin than localhost:<port>, and not one the demo allows
    result = _run_page(
        pages, f"http://127.0.0.1:{port}", "/stranger", _config(report, patient), tmp_path
    )
    assert "error" in result and "Failed to fetch" in result["error"], result
    assert "discovery" not in result  # the very first call, to the service, was refused
