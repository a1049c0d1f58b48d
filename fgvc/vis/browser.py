"""Open an HTML file in a real headless browser and report what a person would see go wrong.

Used by the report's test and by ``benchmarks/report_example.sh``: Chromium (Debian's ``chromium`` package; never
playwright's own browser download) driven by playwright loads the page from disk, and :func:`check_page` returns
the console errors and uncaught exceptions, the images that did not decode (``naturalWidth == 0``), the ``<h2>``
headings, and writes a full-page screenshot.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fgvc.errors import UserError

__all__ = ["PageCheck", "find_chromium", "check_page"]


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    n_images: int = 0
    broken_images: list[str] = field(default_factory=list)  # alt texts of images that did not decode
    headings: list[str] = field(default_factory=list)  # <h2> texts in order
    screenshot: Path | None = None


def find_chromium() -> str | None:
    """The path of a Chromium executable on PATH (``chromium``, ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check_page(html: str | Path, screenshot: str | Path | None = None, width: int = 1366, height: int = 800,
               click: str | None = None) -> PageCheck:
    """Load ``html`` from disk in headless Chromium; optionally ``click`` a CSS selector (e.g. a sortable table's
    header, so that the page's script runs) and save a full-page ``screenshot``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise UserError("checking a page in a browser needs playwright: pip install -e '.[explain]'") from exc
    exe = find_chromium()
    if exe is None:
        raise UserError("no Chromium found on PATH; install Debian's: apt-get install -y chromium")
    out = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out.errors.append(str(e)))
            page.goto(Path(html).resolve().as_uri())
            page.wait_for_load_state("load")
            out.n_images = page.evaluate("document.images.length")
            out.broken_images = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)")
            out.headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
            if click:
                page.click(click)
            if screenshot is not None:
                out.screenshot = Path(screenshot)
                out.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out.screenshot), full_page=True)
        finally:
            browser.close()
    return out
