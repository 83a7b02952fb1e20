"""Render a page in headless Chromium: its DOM after load, a screenshot, and its console messages.

An inline probe script is added to a copy of the page: after ``load`` it writes into the DOM how
many images there are, how many loaded (``complete`` with a natural width), and every
``console.error`` / uncaught error, which ``--dump-dom`` then shows. Chromium's own console log
(``--enable-logging=stderr``) is returned too, for errors the probe cannot see (failed loads).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
PROBE = """<script>
window.__errors = [];
const __error = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); __error(...a); };
window.addEventListener('error',
  e => window.__errors.push(String(e.message || e.target && e.target.src)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const probe = document.createElement('pre');
  probe.id = '__probe';
  probe.textContent = JSON.stringify({images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length, errors: window.__errors});
  document.body.appendChild(probe);
});
</script>"""


def find_chromium() -> str | None:
    """The Chromium or Chrome binary on PATH, None when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Rendered:
    images: int
    loaded: int
    errors: list[str]
    console: list[str]
    screenshot: Path


def render(page: Path, work: Path, binary: str, timeout: float = 90) -> Rendered:
    """Load ``page`` (a copy with the probe) in ``binary``; screenshot to ``work/screenshot.png``."""
    probed = work / "probed.html"
    probed.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    common = [binary, *FLAGS, f"--user-data-dir={work / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    shot = work / "screenshot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    match = re.search(r'<pre id="__probe">(.*?)</pre>', dom.stdout, re.S)
    if match is None:
        raise AssertionError(f"the probe did not run; chromium said:\n{dom.stderr[-3000:]}")
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    return Rendered(probe["images"], probe["loaded"], probe["errors"], console, shot)
