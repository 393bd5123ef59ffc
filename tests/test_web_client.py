"""The web client in a real browser: Debian's headless Chromium, driven by Selenium.

The server is the one ``make serve`` runs (``evasync start --foreground``), on loopback with any
free ports and game time five or ten times faster. The browser plays it as a reader would: it
types in the page's input line and reads the page's text; a telnet client plays beside it.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
import shutil
import socket

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from evasync.server.web import CLIENT

from ._server_support import ROOT, TIMEOUT, Server, wait_for
from ._web_support import browser

PASSWORD = "secret-pw"
#: The screenshot the docs show, and where the suite leaves the one it takes.
SCREENSHOT = ROOT / "docs" / "_static" / "webclient.png"
FRESH = ROOT / "_build" / "screenshots" / "webclient.png"
UPDATE = "EVASYNC_UPDATE_SCREENSHOTS"

#: Records, in the page, each change of the game's state with the notice shown at the time.
WATCH_STATES = """
window.seenStates = [];
new MutationObserver(() => window.seenStates.push([
  document.body.dataset.game, document.getElementById("notice-text").textContent,
  document.body.dataset.opens, document.body.dataset.link,
])).observe(document.body, {attributes: true});
"""


def viewport(driver, width: int, height: int, mobile: bool = False) -> None:
    """Make the page's viewport exactly this size (a window's size includes its frame)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


class Page:
    """The web client in the browser: type lines, read the text it shows."""

    def __init__(self, driver, url: str) -> None:
        self.driver = driver
        driver.get(url)
        self.pos = 0
        self.wait_open()
        self.expect("create <name> <password>")

    def wait_open(self, opens: int = 1) -> None:
        wait_for(lambda: self.body("link") == "open" and int(self.body("opens")) >= opens,
                 what="the page's WebSocket to open")

    def body(self, key: str) -> str:
        return self.driver.execute_script(f"return document.body.dataset.{key}")

    def notice(self) -> str:
        return self.driver.execute_script(
            "const n = document.getElementById('notice');"
            "return n.hidden ? '' : document.getElementById('notice-text').textContent")

    @property
    def input(self):
        return self.driver.find_element(By.ID, "line")

    def type(self, line: str) -> None:
        self.input.send_keys(line, Keys.ENTER)

    def text(self) -> str:
        return self.driver.execute_script(
            "return document.getElementById('output').textContent")

    def expect(self, text: str, timeout: float = TIMEOUT) -> None:
        """Wait for ``text`` after what the previous expect found."""
        def found():
            at = self.text().find(text, self.pos)
            return at + 1 if at != -1 else None
        self.pos = wait_for(found, timeout, what=f"{text!r} in the page") - 1 + len(text)

    def command(self, line: str, text: str, timeout: float = TIMEOUT) -> None:
        self.type(line)
        self.expect(text, timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Game time five times faster (not ten, as elsewhere): a craft's steps are two seconds apart,
    # room enough for a telnet answer on a busy machine.
    server = Server(tmp_path_factory.mktemp("webclient"), speed=5).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def driver():
    with browser() as driver:
        yield driver


@pytest.fixture(scope="module")
def page(server, driver):
    """The page, logged in as Ada: the first account, so the superuser."""
    page = Page(driver, server.web)
    page.command(f"create Ada {PASSWORD}", "Welcome, Ada!")
    wait_for(lambda: driver.find_element(By.ID, "player").text == "Ada", what="the name shown")
    return page


@pytest.fixture(scope="module")
def tom(server, page):
    """A telnet player beside the browser."""
    client = server.client("Tom", PASSWORD)
    yield client
    client.close()


def test_the_server_text_is_shown_as_text_never_as_markup(page):
    page.command("say <b>x</b> & <script>alert(1)</script>",
                 'You say, "<b>x</b> & <script>alert(1)</script>"')
    assert page.driver.find_elements(By.CSS_SELECTOR, "#output b, #output script") == []
    page.command("say naïve café ☕ ß", 'You say, "naïve café ☕ ß"')
    assert "> create Ada ********" in page.text()      # the echo hides the password
    assert PASSWORD not in page.text()


def test_a_craft_takes_its_time_while_a_telnet_player_is_answered_at_once(page, tom):
    page.type("craft a chair")
    page.expect("You start crafting a chair.")
    tom.command("look", "The Demo Room")
    # The craft's steps are ten game seconds apart (two real ones): it was still under way when
    # Tom got his answer.
    assert "You finish crafting a chair." not in page.text()[page.pos:]
    for step in ("You shape the main part of a chair.", "You add the finer details to a chair.",
                 "You finish crafting a chair."):
        page.expect(step)
    tom.command("look", "The Demo Room")


def test_browser_and_telnet_players_see_each_other(page, tom):
    page.command("who", "Connected")
    wait_for(lambda: "Tom" in page.text()[page.pos - 40:], what="Tom in who")
    tom.command("who", r"Connected \(\d+\): .*Ada.*Tom")
    page.command("say hello from the browser", 'You say, "hello from the browser"')
    tom.expect('Ada says, "hello from the browser"')
    tom.command("say hello from telnet", 'You say, "hello from telnet"')
    page.expect('Tom says, "hello from telnet"')


def test_questions_are_answered_from_the_input_line(page):
    page.command("sell old map", "Deal? (yes/no)")
    page.command("yes", "You sell old map for 21 gold.")


def test_up_and_down_walk_the_input_history(page):
    page.command("north", "You walk north")
    page.command("south", "You walk south")
    field = page.input
    field.send_keys("we")                            # a draft, kept while walking
    for key, shown in ((Keys.ARROW_UP, "south"), (Keys.ARROW_UP, "north"),
                       (Keys.ARROW_DOWN, "south"), (Keys.ARROW_DOWN, "we")):
        field.send_keys(key)
        assert field.get_property("value") == shown
    field.send_keys(Keys.ARROW_UP, Keys.ENTER)
    page.expect("You walk south")
    history = page.driver.execute_script("return document.getElementById('line').value")
    assert history == ""


def test_a_reload_keeps_the_page_connected_and_a_persistent_brew_finishes(page):
    page.command("brew tea", "You set a cauldron of tea to simmer")
    page.driver.execute_script(WATCH_STATES)
    page.command("reload", "the server has been reloaded")
    wait_for(lambda: page.body("game") == "ready", what="the game to be ready")
    seen = page.driver.execute_script("return window.seenStates")
    assert ["reloading", "The game is reloading; you stay connected.", "1", "open"] in seen
    assert seen[-1][0] == "ready" and page.notice() == ""
    assert page.body("opens") == "1" and page.body("link") == "open"   # never disconnected
    page.command("look", "The Demo Room")
    page.expect("Your tea is ready!", timeout=60)


def test_the_page_fits_a_390px_phone_without_sideways_scrolling(page):
    driver = page.driver
    viewport(driver, 390, 844, mobile=True)
    try:
        assert driver.execute_script("return window.innerWidth") == 390
        page.command("say " + "w" * 300, 'You say, "www')
        page.command("help", "Available commands:")
        sizes = driver.execute_script("""
            const output = document.getElementById("output");
            const send = document.querySelector("#prompt button").getBoundingClientRect();
            const field = document.getElementById("line").getBoundingClientRect();
            return {page: document.documentElement.scrollWidth, window: window.innerWidth,
                    output: output.scrollWidth, outputBox: output.clientWidth,
                    send: send.right, field: field.width};
        """)
        assert sizes["page"] <= sizes["window"], sizes
        assert sizes["output"] <= sizes["outputBox"], sizes
        assert sizes["send"] <= sizes["window"] and sizes["field"] > 150, sizes
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_after_quit_the_page_stays_away_until_asked(page):
    page.command("quit", "Goodbye!")
    wait_for(lambda: page.body("link") == "closed", what="the page to see the close")
    assert page.notice() == "You left the game."
    button = page.driver.find_element(By.ID, "reconnect")
    assert button.is_displayed() and button.text == "Play again"
    button.click()
    page.wait_open(opens=2)
    page.expect("create <name> <password>")
    page.command(f"connect Ada {PASSWORD}", "Welcome back, Ada!")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_lost_connection_is_shown_and_the_page_reconnects_and_logs_back_in(
        tmp_path, driver):
    server = Server(tmp_path, port=_free_port(), web_port=_free_port()).start()
    try:
        page = Page(driver, server.web)
        page.command(f"create Bea {PASSWORD}", "Welcome, Bea!")
        server.stop()
        wait_for(lambda: page.body("link") == "closed", what="the page to see the stop")
        assert page.notice().startswith("The server has stopped. Reconnecting in ")
        server.start()
        page.wait_open(opens=2)
        page.expect("Welcome back, Bea!")           # logged back in by the page
        wait_for(lambda: driver.find_element(By.ID, "player").text == "Bea",
                 what="the name shown again")
        assert page.notice() == ""
        page.command("look", "The Demo Room")
    finally:
        server.close()


# -- the screenshot the docs show ------------------------------------------------------------

SIZE = (760, 500)


def play_scene(page: Page, ben) -> None:
    """What the picture shows: a browser player and a telnet one, each line waited for."""
    page.command(f"create Ada {PASSWORD}", "Type 'help'")
    ben.login("Ben", PASSWORD)
    ben.command("say Hello from telnet!", 'You say, "Hello from telnet!"')
    page.expect('Ben says, "Hello from telnet!"')
    page.command("craft a chair", "You finish crafting a chair.")
    page.command("brew tea", "You set a cauldron of tea to simmer")
    page.command("who", "Connected (2)")


def fingerprint() -> str:
    """What decides how the picture looks: the page's files, the scene and the window."""
    digest = hashlib.sha256(repr((inspect.getsource(play_scene), SIZE)).encode())
    for name in sorted(os.listdir(CLIENT)):
        digest.update(name.encode() + (CLIENT / name).read_bytes())
    return digest.hexdigest()


def test_the_docs_show_a_current_screenshot_of_the_page(tmp_path, driver):
    from PIL import Image, PngImagePlugin

    server = Server(tmp_path).start()
    ben = server.client()
    try:
        viewport(driver, *SIZE)
        play_scene(Page(driver, server.web), ben)
        driver.execute_script("document.getElementById('line').blur()")   # no caret
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
    finally:
        ben.close()
        server.close()
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert shot.size == SIZE, shot.size
    info = PngImagePlugin.PngInfo()
    info.add_text("evasync-fingerprint", fingerprint())
    FRESH.parent.mkdir(parents=True, exist_ok=True)
    shot.save(FRESH, pnginfo=info)
    committed = Image.open(SCREENSHOT).text.get("evasync-fingerprint") \
        if SCREENSHOT.exists() else None
    if committed == fingerprint():
        return
    if os.environ.get(UPDATE) == "1":
        shutil.copyfile(FRESH, SCREENSHOT)
        return
    pytest.fail(f"{SCREENSHOT.relative_to(ROOT)} no longer shows the page as it is (its files "
                f"or the scene changed). The suite took a new one: {FRESH.relative_to(ROOT)}. "
                f"Look at it, and if it is right: {UPDATE}=1 .venv/bin/python -m pytest "
                f"tests/test_web_client.py -k screenshot, then commit the picture.")
