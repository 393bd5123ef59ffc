"""The copy test's port of sphinx-copybutton copies what the real button copies, on every page.

Each built page is opened in headless Chromium (Debian's ``chromium``, which .ci/run installs)
with one script added: once the page has loaded, it clicks every copy button and records the
text the button hands to the clipboard (clipboard.js copies with ``document.execCommand``,
which the script replaces by a recorder). That list must equal what ``_copybutton`` computes
for the same page, block by block.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bs4

from ._site import Site
from .test_docs_copy import PAGES

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

RECORD_COPIES = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const copied = [];
  document.execCommand = (command) => {
    const textareas = document.querySelectorAll("textarea");
    copied.push(command === "copy" && textareas.length ? textareas[textareas.length - 1].value : null);
    return true;
  };
  document.querySelectorAll("button.copybtn").forEach((button) => button.click());
  const out = document.createElement("pre");
  out.id = "evasync-copied";
  out.textContent = JSON.stringify(copied);
  document.body.appendChild(out);
}, 500));
</script>
"""


def _copied_in_browser(page: Path, profile: Path) -> list[str]:
    page.write_text(page.read_text(encoding="utf-8").replace("</body>", RECORD_COPIES + "</body>"),
                    encoding="utf-8")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    found = bs4.BeautifulSoup(done.stdout, "html.parser").find("pre", id="evasync-copied")
    assert found is not None, f"{page}: the page did not report its copies:\n{done.stderr[-2000:]}"
    return json.loads(found.get_text())


def test_the_port_copies_what_the_browser_copies(built_site: Site, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "headless Chromium is needed: apt-get install chromium"
    html = tmp_path / "html"
    shutil.copytree(built_site.html, html)
    jobs = {docname: (html / f"{docname}.html", tmp_path / f"profile-{i}")
            for i, docname in enumerate(PAGES)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_browser = dict(zip(jobs, pool.map(lambda job: _copied_in_browser(*job), jobs.values())))
    compared = 0
    for docname in PAGES:
        ported = [block.copied for block in built_site.blocks(docname) if block.copied is not None]
        assert in_browser[docname] == ported, docname
        compared += len(ported)
    assert compared > 0
