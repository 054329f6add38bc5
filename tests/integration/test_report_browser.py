"""The browser check in real headless Chromium: a rendered report passes (every image decoded, no console error,
screenshot beside it); the same report with one image's bytes corrupted, or with a console error, fails."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from report.browser import SCREENSHOT_FILE, check_page
from report.render import render_report

pytestmark = pytest.mark.timeout(180)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "grpo_metrics.jsonl"


@pytest.fixture
def report(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "metrics.jsonl")
    return render_report(run)


def test_rendered_report_passes_and_is_screenshotted(report: Path) -> None:
    result = check_page(report)
    assert result.ok, result.problems()
    assert result.images == len(list((report.parent / "report_files").glob("*.png"))) >= 8
    shot = report.parent / SCREENSHOT_FILE
    assert result.screenshot == shot and shot.read_bytes()[:4] == b"\x89PNG"
    assert shot.stat().st_size > 20_000  # a page with plots, not a blank one


def test_a_corrupted_image_fails_the_check(report: Path) -> None:
    html = report.read_text()
    first = re.search(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert first is not None
    data = first.group(1)
    broken = "A" * 40 + data[40:]  # signature and header chunk zeroed: no decoder can read it
    report.write_text(html.replace(data, broken, 1))
    result = check_page(report)
    assert not result.ok
    assert len(result.broken_images) == 1, result.problems()
    assert "naturalWidth == 0" in result.problems()


def test_a_console_error_fails_the_check(report: Path) -> None:
    report.write_text(report.read_text().replace("</body>", "<script>console.error('plot missing')</script></body>"))
    result = check_page(report)
    assert not result.ok and result.console_errors == ["plot missing"]
    assert not result.broken_images
