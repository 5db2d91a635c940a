"""The HTML report in a real headless browser (Debian's chromium, installed by
`scripts/services.sh install`, which `make test` runs): the charts and totals are there, the
page's script ran, and no error reached the console. A screenshot is written under
build/test-screenshots/ and its path printed.

Without chromium the browser tests are skipped, except under CI (the CI variable set), where
they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import WriteFile
from tests.finance_world import MONTH, World, build_world
from tests.servers import in_ci

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "test-screenshots"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-extensions", "--hide-scrollbars",
    "--enable-logging=stderr", "--v=0",
)
# What Chromium logs for a page's console errors and uncaught exceptions.
CONSOLE_ERROR = re.compile(r"CONSOLE\(\d+\)|Uncaught|console\.error|ERROR:CONSOLE", re.IGNORECASE)


def chromium() -> str:
    found = shutil.which("chromium") or (str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.exists() else None)
    if found is None:
        reason = "chromium is not installed (scripts/services.sh install, or `apt-get install -y chromium`)"
        if in_ci():
            pytest.fail(f"CI needs the headless browser: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        self.binary, self.profile = binary, profile

    def run(self, page: Path, *action: str) -> subprocess.CompletedProcess[str]:
        self.profile.mkdir(parents=True, exist_ok=True)
        command = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--virtual-time-budget=5000",
                   *action, page.resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    def dump_dom(self, page: Path) -> tuple[str, str]:
        result = self.run(page, "--dump-dom")
        return result.stdout, result.stderr

    def screenshot(self, page: Path, path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        result = self.run(page, f"--screenshot={path}", "--window-size=1000,2600")
        assert path.is_file() and path.stat().st_size > 10_000, result.stderr[-2000:]
        return result.stderr


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    return Browser(chromium(), tmp_path / "chromium-profile")


@pytest.fixture
def world(home: Path, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    made = build_world(home, write_file, monkeypatch, tmp_path)
    made.report("csv", "html")
    return made


class Dom(HTMLParser):
    """Elements of interest in a dumped DOM: attributes by id, svg charts and their bars."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.root: dict[str, str | None] = {}
        self.charts: list[dict[str, str | None]] = []
        self.bars = 0
        self.text: list[str] = []
        self._current_id: list[str] = []
        self.texts_by_id: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.root = attributes
        if tag == "svg" and "chart-svg" in (attributes.get("class") or ""):
            self.charts.append(attributes)
        if tag == "rect" and attributes.get("class") == "bar":
            self.bars += 1
        if attributes.get("id"):
            self.by_id[str(attributes["id"])] = attributes
            self._current_id.append(str(attributes["id"]))
        else:
            self._current_id.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._current_id:
            self._current_id.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for ident in self._current_id:
            if ident:
                self.texts_by_id[ident] = self.texts_by_id.get(ident, "") + data


def test_the_html_report_is_self_contained(world: World) -> None:
    page = (world.out / f"chargeback-{MONTH}.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=|url\(|@import|https?://""", page), "the page must fetch nothing"
    assert page.count("<svg") == 3 and "<script" in page


def test_the_html_report_renders_in_headless_chromium(world: World, browser: Browser,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    page = world.out / f"chargeback-{MONTH}.html"
    dom_text, log = browser.dump_dom(page)
    dom = Dom(dom_text)
    # the page's script ran to its end, and recorded no error
    assert dom.root.get("data-script") == "ok", dom_text[:2000]
    assert "hidden" in dom.by_id["script-errors"] and not dom.texts_by_id.get("script-errors", "").strip()
    assert not CONSOLE_ERROR.search(log), log[-3000:]
    # the three charts, with bars
    assert dom.root.get("data-charts") == "3"
    assert [c.get("aria-label") for c in dom.charts] == ["cost by cost center", "cost over days", "tokens by model"]
    assert all(int(c.get("data-bars") or 0) > 0 for c in dom.charts) and dom.bars >= 8
    # totals: 145.60 USD = 1.60 pay-as-you-go + 144.00 PTU; the unpriced and anomaly sections
    assert dom.by_id["total-USD"]["data-exact"] == "145.6"
    assert dom.texts_by_id["total-USD"].strip() == "145.60 USD"
    text = " ".join(" ".join(dom.text).split())
    assert "pay-as-you-go 1.60 USD · PTU 144.00 USD" in text
    assert "no-capacity" in dom.texts_by_id["unpriced-reasons"]
    assert "m-ptu" in dom.texts_by_id["unpriced-models"]
    assert "CC-OWNER" in dom.texts_by_id["ptu-table"]
    assert "16.7%" in dom.texts_by_id["ptu-table"]  # 96,000 of 2 x 288,000 weighted tokens (10-01, 10-02)
    screenshot = SCREENSHOTS / f"chargeback-{MONTH}.png"
    log = browser.screenshot(page, screenshot)
    assert not CONSOLE_ERROR.search(log), log[-3000:]
    with capsys.disabled():
        print(f"\nHTML report screenshot: {screenshot}")


def test_the_browser_check_catches_a_broken_page(browser: Browser, tmp_path: Path) -> None:
    """The harness itself: an error in a page shows in the DOM marker and in the console log."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><script>window.addEventListener('error', function (e) {"
                    "document.getElementById('script-errors').hidden = false;"
                    "document.getElementById('script-errors').textContent = String(e.message);});</script></head>"
                    "<body><pre id=script-errors hidden></pre><script>undefinedFunction();</script></body></html>")
    dom_text, log = browser.dump_dom(page)
    dom = Dom(dom_text)
    assert "undefinedFunction" in dom.texts_by_id.get("script-errors", "")
    assert CONSOLE_ERROR.search(log), log[-3000:]


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_chromium_ci_fails_and_a_developer_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str,
                                                         outcome: type[BaseException]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys.modules[__name__], "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="chromium"):
        chromium()
