"""The HTML report opened in headless Chromium: every image loads, no console error, nothing fetched.

Uses the Debian ``chromium`` package (``apt-get install chromium``) when present; skips otherwise. Nothing is
downloaded: no browser, no driver.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from segbench.report import write_report
from segbench.run.runner import RunConfig, run

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian package 'chromium'; not installed)")

# Injected at the top of a copy of the page, so it sees everything the page does: script errors, console.error
# calls, resources that fail to load (error events in the capture phase) and every resource fetched at all.
_RECORDER = """<script>
(function () {
  var errors = [];
  var put = function () { document.documentElement.setAttribute("data-errors", JSON.stringify(errors)); };
  window.addEventListener("error", function (e) {
    errors.push(e.message || ("failed to load " + ((e.target && (e.target.src || e.target.href)) || "?").slice(0, 60)));
    put();
  }, true);
  var original = console.error;
  console.error = function () { errors.push("console.error: " + [].join.call(arguments, " ")); put(); original.apply(console, arguments); };
  window.addEventListener("load", function () {
    put();
    var fetched = performance.getEntriesByType("resource").map(function (r) { return r.name; });
    document.documentElement.setAttribute("data-fetched", JSON.stringify(fetched));
  });
})();
</script>"""


def _open(page: Path, tmp_path: Path) -> tuple[str, str]:
    """Load ``page`` in headless Chromium with the recorder; returns ``(DOM after load, stderr)``."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(re.sub(r"<head>|<html>", lambda m: m.group(0) + _RECORDER, page.read_text(), count=1))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def _problems(dom: str, stderr: str) -> list[str]:
    """Every sign of a broken page: image failures, console errors, fetches, a missing load record."""
    problems = []
    images = re.findall(r"<img\b[^>]*>", dom)
    problems += [f"image did not load: {tag[:80]}" for tag in images if "data-failed" in tag or not re.search(r'data-loaded="[1-9]', tag)]
    check = re.search(r'id="image-check">([^<]*)<', dom)
    record = json.loads(check.group(1)) if check and check.group(1) else None
    if record is None or record["loaded"] != record["images"]:
        problems.append(f"image check: {record}")
    errors = re.search(r"data-errors=\"([^\"]*)\"", dom)
    problems += json.loads(errors.group(1).replace("&quot;", '"')) if errors else ["the recorder did not run"]
    fetched = re.search(r"data-fetched=\"([^\"]*)\"", dom)
    problems += [f"fetched {u}" for u in json.loads(fetched.group(1).replace("&quot;", '"'))] if fetched else ["no load event"]
    problems += [line for line in stderr.splitlines() if "Uncaught" in line or ":CONSOLE" in line]
    return problems


def test_report_page_loads_every_image_without_console_errors(tmp_path):
    out = tmp_path / "run"
    config = RunConfig(out=out, datasets=["synthetic"], methods=["otsu"], save_predictions=True,
                       split_fractions=(0.4, 0.1, 0.5), dataset_options={"synthetic": {"num_images": 12, "size": (48, 40)}})
    run(config, progress=False)
    write_report(out, formats=("html",))
    dom, stderr = _open(out / "report.html", tmp_path)
    assert len(re.findall(r"<img\b", dom)) == 5  # scores, accuracy vs latency, per-image, reliability, qualitative grid
    assert _problems(dom, stderr) == []


def test_the_check_catches_a_broken_page(tmp_path):
    """The same check on a page with a broken image, a fetch and a script error must fail."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head></head><body><img src="missing.png" onload="this.dataset.loaded=1" '
                    'onerror="this.dataset.failed=1"><script>console.error("deliberate"); nope();</script>'
                    '<pre id="image-check"></pre></body></html>')
    problems = _problems(*_open(page, tmp_path))
    assert any("image did not load" in p for p in problems)
    assert any("console.error: deliberate" in p for p in problems)
    assert any("nope is not defined" in p for p in problems)
    assert any("missing.png" in p for p in problems)
