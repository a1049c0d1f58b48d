"""The page at ``/`` in a real browser (Debian's chromium through playwright, never a browser download): a photo
picked from the synthetic set shows the class the API predicts, with no console error, no request leaving the
machine, the file input reachable from the keyboard and no sideways scrolling at a phone's width."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from serve_helpers import LiveServer

CHROMIUM = "/usr/bin/chromium"
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if not Path(CHROMIUM).exists():  # before the server starts
    pytest.skip(f"no {CHROMIUM} on this machine (.ci/run installs Debian's chromium: apt-get install -y chromium)",
                allow_module_level=True)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


@pytest.mark.slow  # a real server and Chromium: ~8 s
def test_page_predicts_a_photo_in_chromium(live_server: LiveServer, serve_data: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    photo = sorted(p for p in serve_data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[0]
    expected = httpx.post(live_server.url + "/predict", files={"image": (photo.name, photo.read_bytes())},
                          timeout=60).json()["results"][0]["topk"][0]["class"]
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 360, "height": 740})  # a phone's width
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).hostname in
                       ("127.0.0.1", None) else route.abort())
            page.goto(live_server.url + "/")
            # a locator wait, not wait_for_function: its string predicate is eval'd in the page, which the page's
            # Content-Security-Policy (no 'unsafe-eval') refuses whenever the first check does not already pass
            page.locator("#model", has_text="classes").wait_for(timeout=30_000)
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "file", "the file input is not the first Tab stop"
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, "the page scrolls sideways"
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#results li", timeout=60_000)
            names = page.locator("#results .name").all_text_contents()
            status = page.locator("#status").text_content() or ""
            assert page.evaluate("document.querySelector('#pictures img').naturalWidth") > 0
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert names[0] == expected and len(names) == 3  # the tiny run has 3 classes: its top-5 is all 3
    assert expected in status
    assert not errors, errors
    outside = [u for u in requests if urlsplit(u).scheme not in ("data", "blob") and
               not u.startswith(live_server.url + "/")]
    assert not outside, f"requests left the machine: {outside}"
    assert any(u.endswith("/predict?topk=5") for u in requests)
