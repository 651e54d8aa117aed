"""The demo web client in Debian's headless Chromium, driven by Playwright, against
``recsys demo --services`` on real Kafka, Redis and Cassandra with MovieLens 100K.

The page is loaded, the user switched, an item played; "Because you watched" must show
that item's neighbours within 2 seconds (browser -> POST /v1/events -> Kafka -> nearline
worker -> Redis -> GET /v1/users/{id}/home). Keyboard navigation, the item page, the debug
panel, alt text and a phone-sized window are checked too. Screenshots are saved under
``$RECSYS_TEST_ARTIFACTS`` (default ``test-artifacts/``); the README's comes from here.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import CASSANDRA_URL, KAFKA_URL, REDIS_URL, unique
from tests.integration.demo_process import DemoProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.spark,
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.cassandra,
    pytest.mark.timeout(1200),
]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RECSYS_TEST_CHROMIUM", "/usr/bin/chromium")
# As Debian's Chromium runs here: no sandbox as root, and no background connections to
# hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def artifacts() -> Path:
    folder = Path(os.environ.get("RECSYS_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, movielens_dir_session: Path, cassandra_admin: Any
) -> Iterator[DemoProcess]:
    keyspace = unique("recsys_demo")
    env = {
        "RECSYS_MOVIELENS_DIR": str(movielens_dir_session),
        "RECSYS_EVENT_LOG_URL": f"{KAFKA_URL.rstrip('/')}/{unique('demo_events')}",
        "RECSYS_USER_STATE_URL": f"{REDIS_URL}?namespace={unique('demo')}",
        "RECSYS_CANDIDATES_URL": f"{CASSANDRA_URL.rstrip('/')}/{keyspace}",
        "RECSYS_HISTORY_URL": f"{CASSANDRA_URL.rstrip('/')}/{keyspace}",
    }
    process = DemoProcess(tmp_path_factory.mktemp("demo"), env, "--services")
    try:
        process.start(timeout_s=1000)  # the offline job on 100,000 ratings first
        out = process.output()
        assert "stores: cassandra, kafka, redis" in out and "MovieLens 100K" in out, out
        yield process
        assert process.stop() == 0, process.output()[-3000:]
    finally:
        process.stop()
        cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (`make test` does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert errors == [], f"the page logged errors: {errors}"


def tile_ids(page: Page, row: str) -> list[str]:
    ids: list[str] = page.locator(f"[data-row={row}] .tile").evaluate_all(
        "tiles => tiles.map(t => t.dataset.itemId)"
    )
    return ids


def test_play_shows_its_neighbours_in_because_you_watched_within_2_s(
    demo: DemoProcess, page: Page
) -> None:
    page.goto(demo.url + "/")
    expect(page.locator("[data-row=top_picks] .tile").first).to_be_visible(timeout=15_000)
    assert page.locator("section.row h2").all_text_contents()[0] == "Top picks for you"

    page.fill("#user-input", "42")
    page.press("#user-input", "Enter")
    expect(page.locator("#status")).to_contain_text("Browsing as 42", timeout=5_000)
    first_pick = tile_ids(page, "top_picks")[0]

    trending = page.locator("[data-row=trending] .tile").first
    item = trending.get_attribute("data-item-id")
    assert item is not None
    title = demo.get(f"/v1/items/{item}")["title"]
    started = time.monotonic()
    trending.locator("button.play").click()
    heading = page.locator("[data-row=because_you_watched] h2")
    expect(heading).to_have_text(f"Because you watched {title}", timeout=2_000)
    seconds = time.monotonic() - started

    recent = demo.get("/v1/users/42/home")["recent"]
    assert recent[0] == item
    neighbours = [s["item_id"] for s in demo.get(f"/v1/items/{item}/similar", k=60)["items"]]
    expected = [n for n in neighbours if n not in recent][:12]
    assert tile_ids(page, "because_you_watched") == expected
    meta = page.locator("[data-row=because_you_watched] .row-meta").inner_text()
    assert "sources: fresh" in meta and "bundle " in meta and "ms on the server" in meta
    expect(page.locator("#status")).to_contain_text("rows updated")
    assert first_pick  # the page showed picks before the play
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=artifacts() / "web-client.png")
    print(f"play -> 'Because you watched' updated in {seconds:.2f} s")


def test_keyboard_item_page_debug_panel_and_alt_text(demo: DemoProcess, page: Page) -> None:
    page.goto(demo.url + "/?user=7")
    tiles = page.locator("[data-row=top_picks] .tile")
    expect(tiles.first).to_be_visible(timeout=15_000)
    labels = page.locator("svg.poster").evaluate_all(
        "s => s.map(x => x.getAttribute('aria-label'))"
    )
    assert labels and all(label.startswith("Poster of ") for label in labels)

    tiles.first.focus()
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("document.activeElement.dataset.itemId")
    assert focused == tile_ids(page, "top_picks")[1]
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.closest('[data-row]').dataset.row") != "top_picks"
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.dataset.itemId") == focused

    title = demo.get(f"/v1/items/{focused}")["title"]
    page.keyboard.press("i")
    dialog = page.locator("#debug")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"{title} ({focused})")
    for fact in ("reason", "sources", "score", "bundle", "arm", "Stage timings", "total"):
        expect(dialog).to_contain_text(fact)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{demo.url}/?user=7#/item/{focused}")
    expect(page.locator("#item-title")).to_have_text(title)
    expect(page.locator("[data-row=more_like_this] .tile").first).to_be_visible()
    similar = [s["item_id"] for s in demo.get(f"/v1/items/{focused}/similar", k=12)["items"]]
    assert tile_ids(page, "more_like_this") == similar
    page.screenshot(path=artifacts() / "web-client-item.png")


def test_new_visitor_on_a_phone_sized_window(demo: DemoProcess, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(demo.url + "/")
    expect(page.locator("[data-row=top_picks] .tile").first).to_be_visible(timeout=15_000)
    page.click("#new-visitor")
    expect(page.locator("#status")).to_contain_text("Browsing as visitor-")
    # Nothing precomputed or fresh for someone new: popular and trending items only.
    sources = page.locator("[data-row=top_picks] .row-meta").inner_text().split(" · ")[0]
    assert sources.startswith("sources: ") and sources != "sources: "
    assert set(sources.removeprefix("sources: ").split(", ")) <= {"popular", "trending"}
    expect(page.locator("[data-row=because_you_watched] .empty")).to_be_visible()
    # Rows scroll sideways inside themselves; the page itself never does.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.locator("[data-row=top_picks] button.play").first).to_be_in_viewport()
    page.screenshot(path=artifacts() / "web-client-phone.png")
