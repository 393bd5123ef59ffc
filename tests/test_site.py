"""The built site: it reads on a phone, and links to Python's and Twisted's docs, offline.

The site is built into a temporary folder (``sphinx-build -W``, as ``make html`` does). Debian's
headless Chromium looks at it: every page
is screenshotted whole at 1280 and 390 px wide into ``_build/screenshots/`` (ignored by git), for
a person to look at; the test asserts that at 390 px no code block or sample session scrolls
sideways, unless one of its words is wider than the block and so cannot be broken.
"""

from __future__ import annotations

import base64
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTHS = (1280, 390)
PHONE = 390
#: Sphinx's generated pages (index, search) hold no code blocks of ours.
GENERATED = {"genindex.html", "py-modindex.html", "search.html"}

#: For each code block that scrolls sideways: its width, the width it has to show its text, and
#: the widest word of its text (measured in its own font), which no wrapping can break up.
OVERFLOWING_BLOCKS = """
document.querySelectorAll("details").forEach(details => { details.open = true; });
const blocks = Array.from(document.querySelectorAll("article div.highlight pre"));
return blocks.filter(pre => pre.scrollWidth > pre.clientWidth + 1).map(pre => {
  const style = getComputedStyle(pre);
  const probe = document.createElement("span");
  probe.style.whiteSpace = "pre";
  probe.style.font = style.font;
  pre.appendChild(probe);
  let widest = 0, word = "";
  for (const candidate of pre.textContent.split(/\\s+/)) {
    probe.textContent = candidate;
    if (probe.offsetWidth > widest) { widest = probe.offsetWidth; word = candidate; }
  }
  probe.remove();
  const room = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const transcript = pre.closest("div.transcript") !== null;
  return {text: pre.textContent.slice(0, 80), scroll: pre.scrollWidth, room: room,
          widest: widest, word: word, transcript: transcript};
});
"""


@pytest.fixture(scope="module")
def site():
    """The site, built afresh with warnings as errors."""
    with tempfile.TemporaryDirectory(prefix="evasync-site-") as out:
        done = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-c",
             str(ROOT), str(ROOT / "docs"), out],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        yield Path(out)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through its chromedriver (``.ci/run`` installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (f"{missing} not found: install Debian's chromium and chromium-driver "
                         "(.ci/run does)")
    profile = tempfile.mkdtemp(prefix="evasync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html")
                  if "_modules" not in p.parts and "_static" not in p.parts
                  and p.name not in GENERATED)


def screenshot(driver, path: Path) -> None:
    """The whole page, not only the window."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_no_code_block_scrolls_sideways_on_a_phone(site, browser):
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    scrolling: list[str] = []
    unbreakable = checked = 0
    for width in WIDTHS:
        browser.set_window_size(width, 900)
        for page in pages(site):
            name = page.relative_to(site)
            browser.get(page.as_uri())
            screenshot(browser, SCREENSHOTS / str(width) / name.with_suffix(".png"))
            if width != PHONE:
                continue
            found = browser.execute_script(
                "return document.querySelectorAll('article div.highlight pre').length")
            # every block of the page is looked at, not only those the selector happens to find
            assert found == page.read_text().count('<div class="highlight"><pre>'), name
            checked += found
            for block in browser.execute_script(OVERFLOWING_BLOCKS):
                if block["widest"] > block["room"]:
                    unbreakable += 1  # one word wider than the block: nothing to wrap
                    continue
                scrolling.append(f"{name}: {block['scroll']} px of text in {block['room']:.0f} "
                                 f"px{' (transcript)' if block['transcript'] else ''}: "
                                 f"{block['text']!r}")
    print(f"{checked} code blocks at {PHONE} px; {unbreakable} scroll for a word wider than "
          "the block")
    assert not scrolling, (f"{len(scrolling)} of {checked} code blocks scroll sideways at "
                           f"{PHONE} px:\n" + "\n".join(scrolling))
    shots = list(SCREENSHOTS.rglob("*.png"))
    assert len(shots) == len(WIDTHS) * len(pages(site)), shots


def test_the_build_reads_inventories_from_the_checkout_only():
    """intersphinx fetches nothing: every inventory is a file committed with the docs."""
    mapping = runpy.run_path(str(ROOT / "conf.py"))["intersphinx_mapping"]
    assert set(mapping) == {"python", "twisted"}
    for name, (base, inventory) in mapping.items():
        assert base.startswith("https://"), name
        assert Path(inventory).is_file() and ROOT in Path(inventory).parents, inventory


def test_twisted_and_python_names_link_to_their_docs(site):
    page = (site / "reference" / "run-async.html").read_text()
    for target in ("https://docs.twisted.org/en/stable/api/twisted.internet.defer.Deferred.html",
                   "https://docs.twisted.org/en/stable/api/twisted.python.failure.Failure.html",
                   "https://docs.python.org/3/library/concurrent.futures.html"
                   "#concurrent.futures.Executor"):
        assert f'href="{target}"' in page, target
    tasks = (site / "reference" / "tasks.html").read_text()
    assert 'href="https://docs.twisted.org/en/stable/api/twisted.internet.interfaces.' \
           'IReactorTime.html"' in tasks
