"""``bench report``'s page in a real browser: Debian's headless Chromium loads it with no
console error, every embedded image decodes (``naturalWidth`` > 0), and a screenshot of it is
not blank.

Not part of CI (plain ``tox``): run with ``tox -e browser``, or ``pytest checks/browser``,
on a machine with Chromium (``apt-get install chromium``; another binary: ``$CHROMIUM``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from bench.commands.main import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
#: Appended to a copy of the page only (the shared page has no script): after load, every
#: image's decoded width goes into the body's data-images attribute, which --dump-dom shows.
PROBE = ("<script>window.addEventListener('load', function () {"
         "var widths = Array.from(document.images).map(function (i) {"
         "return i.complete ? i.naturalWidth : 0; });"
         "document.body.setAttribute('data-images', widths.join(','));});</script>")
ERRORS = re.compile(r"CONSOLE[:(]|Uncaught|Failed to load resource|net::ERR_|"
                    r"Not allowed to load", re.I)


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no Chromium: install Debian's (`apt-get install chromium`) or set "
                    "$CHROMIUM to its binary")
    return found


def _chromium_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report of every fixture: run results with and without learning curves (in two
    subfolders) and eval results, so every kind of figure is on the page."""
    folder = tmp_path_factory.mktemp("report") / "results"
    shutil.copytree(FIXTURES / "results" / "runs", folder / "plain" / "runs")
    shutil.copytree(FIXTURES / "paired" / "runs", folder / "curves" / "runs")
    shutil.copytree(FIXTURES / "l2" / "evals", folder / "evals")
    assert main(["report", str(folder)]) == 0
    return folder / "report.html"


def test_the_page_loads_without_console_errors_and_every_image_decodes(report, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                      encoding="utf-8")
    done = _chromium_run(tmp_path, "--dump-dom", probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if ERRORS.search(line)]
    assert errors == [], errors
    widths = re.search(r'data-images="([^"]*)"', done.stdout)
    assert widths, done.stdout[-2000:]
    decoded = [int(w) for w in widths.group(1).split(",")]
    assert len(decoded) == report.read_text(encoding="utf-8").count("<img ") == 5
    assert all(w > 0 for w in decoded), decoded
    for name in ("Test accuracy", "Training cost", "Paired comparison", "Provenance"):
        assert name in done.stdout


def test_a_screenshot_of_the_page_is_not_blank(report, tmp_path):
    shot = tmp_path / "report.png"
    done = _chromium_run(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000",
                         "--hide-scrollbars", report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if ERRORS.search(line)]
    assert errors == [], errors
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    ink = (pixels[..., :3] < 0.9).any(axis=-1).mean()  # share of pixels that are not white
    assert ink > 0.02, ink
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50  # text and figures
    keep = os.environ.get("BROWSER_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
