"""The HTML of ``python -m fgvc.report``: one self-contained page (no network, every image inlined).

A page is a title, a short summary line and a list of :class:`Section` (an ``<h2>`` and its markup). Images go in
as ``data:`` URIs (:func:`png_uri` for matplotlib figures, :func:`jpeg_uri` for photos and overlays), tables as
plain ``<table>`` (:func:`table`), made sortable by clicking a header with the few lines of inline JavaScript in
:data:`SORT_JS`. Every cell is escaped unless it is :class:`Markup`. The layout fits a laptop screen: one column at
most ~1200 px wide, thumbnails at most 160 px.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Markup", "Section", "png_uri", "jpeg_uri", "figure_uri", "img", "table", "render_page", "esc"]


class Markup(str):
    """Markup that goes into the page as is (every other value is escaped)."""


@dataclass(frozen=True)
class Section:
    title: str
    body: str
    anchor: str = ""

    @property
    def id(self) -> str:
        return self.anchor or "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def esc(value: Any) -> str:
    """``value`` as HTML text; :class:`Markup` as is; floats with two decimals; None as an en dash."""
    if isinstance(value, Markup):
        return str(value)
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def jpeg_uri(image: np.ndarray, max_side: int = 160, quality: int = 82) -> str:
    """``image: H, W, 3`` (floats in [0, 1] or uint8) as a JPEG ``data:`` URI, at most ``max_side`` px a side."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pic = Image.fromarray(arr)
    pic.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pic.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_uri(fig: Any, dpi: int = 90) -> str:
    """A matplotlib figure as a PNG ``data:`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return png_uri(buf.getvalue())


def img(uri: str, alt: str, cls: str = "", title: str = "") -> Markup:
    """An ``<img>`` of a ``data:`` URI (``alt`` and ``title`` escaped)."""
    extra = f' class="{cls}"' if cls else ""
    extra += f' title="{html.escape(title)}"' if title else ""
    return Markup(f'<img src="{uri}" alt="{html.escape(alt)}"{extra}>')


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], sortable: bool = False, numeric: Sequence[bool] = (),
          cls: str = "") -> Markup:
    """A ``<table>``; with ``sortable`` a click on a header sorts by that column (``numeric`` columns as numbers,
    sorting on the cell's ``data-v`` value)."""
    numeric = list(numeric) or [False] * len(columns)
    head = "".join(f'<th data-num="{int(n)}">{esc(c)}</th>' for c, n in zip(columns, numeric))
    body = []
    for row in rows:
        cells = []
        for v in row:
            key = f' data-v="{v:.6g}"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{key}>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    return Markup(f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d6dae1;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
nav{position:sticky;top:0;background:#1d2330;padding:6px 24px;z-index:2}nav a{color:#dfe6f3;margin-right:14px;
text-decoration:none;font-size:13px}nav a:hover{text-decoration:underline}
.summary{color:#4a5365}.note{color:#5b6475;font-size:13px}.warn{background:#fff3cd;border-left:4px solid #e0a800;
padding:8px 12px}.good{background:#e8f5e9;border-left:4px solid #2e7d32;padding:8px 12px}
.bad{background:#fdecea;border-left:4px solid #c62828;padding:8px 12px}
table{border-collapse:collapse;margin:6px 0;background:#fff;font-size:13px}th,td{border:1px solid #d6dae1;
padding:3px 8px;text-align:left;vertical-align:top}th{background:#eef1f5}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#98a1b3}
.scroll{max-height:420px;overflow:auto;display:inline-block}
pre{background:#fff;border:1px solid #d6dae1;padding:8px 12px;overflow:auto;max-height:360px;font-size:12px}
img{max-width:100%}.fig{background:#fff;border:1px solid #d6dae1;padding:4px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #d6dae1;padding:6px;width:340px;
font-size:12px}.card img{width:160px;height:160px;object-fit:contain;background:#eee;margin-right:4px}
.ok{color:#2e7d32}.ko{color:#c62828}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var num=th.dataset.num==='1', body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      var dir=th.dataset.dir==='asc'?-1:1; th.dataset.dir=dir===1?'asc':'desc';
      rows.sort(function(a,b){
        var x=a.cells[i], y=b.cells[i];
        if(num){return dir*((parseFloat(x.dataset.v)||0)-(parseFloat(y.dataset.v)||0));}
        return dir*x.textContent.localeCompare(y.textContent);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def render_page(title: str, summary: str, sections: Sequence[Section], footer: str = "") -> str:
    """The whole page: a sticky table of contents, the title and summary, each section, the footer."""
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<nav>{nav}</nav><main><h1>{html.escape(title)}</h1><p class=\"summary\">{summary}</p>{body}"
        f"<p class=\"note\">{footer}</p></main><script>{SORT_JS}</script></body></html>\n"
    )
