"""Renderers of the report's content: a list of blocks (headings, paragraphs, tables, figures, code,
foldable details) rendered to Markdown and to one self-contained HTML page, so both show the same things."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segbench.report.format import fmt, markdown_table

__all__ = ["Heading", "Para", "Table", "Figure", "Code", "Details", "Block", "to_markdown", "to_html"]


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str  # plain text; `code` spans are kept in both formats


@dataclass
class Table:
    df: pd.DataFrame  # cells already formatted as strings


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Code:
    text: str
    lang: str = ""


@dataclass
class Details:
    summary: str
    blocks: list[Block]


Block = Heading | Para | Table | Figure | Code | Details


def to_markdown(blocks: Iterable[Block], out_dir: Path) -> str:
    """Markdown of the blocks; figure links relative to ``out_dir`` (where the page goes)."""
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Table):
            lines += [markdown_table(b.df), ""]
        elif isinstance(b, Figure):
            rel = b.path.relative_to(out_dir).as_posix()
            lines += [f"![{b.path.stem}]({rel})", "", f"*{b.caption}*", ""]
        elif isinstance(b, Code):
            lines += [f"```{b.lang}", b.text, "```", ""]
        elif isinstance(b, Details):
            lines += ["<details>", f"<summary>{html.escape(b.summary, quote=False)}</summary>", "", to_markdown(b.blocks, out_dir), "</details>", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


_NUMERIC = re.compile(r"^[-+–]?[\d.]+(e[-+]?\d+)?( \[.*\])?$|^–$")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:13px}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:12px}
#image-check{display:none}
"""

# Records, in the page itself, whether every figure decoded: a headless browser (tests/test_report_html.py)
# reads it back from the DOM; a reader never sees it.
_CHECK_JS = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.getElementById("image-check").textContent = JSON.stringify({images: imgs.length, loaded: ok});
});
"""


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            text = fmt(v)
            cls = ' class="n"' if _NUMERIC.match(text) else ""
            cells.append(f"<td{cls}>{html.escape(text, quote=False)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_blocks(blocks: Iterable[Block]) -> list[str]:
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{html.escape(b.text, quote=False)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            parts.append(_html_table(b.df))
        elif isinstance(b, Figure):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.path.stem)}" '
                'onload="this.dataset.loaded=this.naturalWidth" onerror="this.dataset.failed=1">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
        elif isinstance(b, Code):
            parts.append(f"<pre><code>{html.escape(b.text, quote=False)}</code></pre>")
        elif isinstance(b, Details):
            parts.append(f"<details><summary>{html.escape(b.summary, quote=False)}</summary>{''.join(_html_blocks(b.blocks))}</details>")
    return parts


def to_html(blocks: list[Block]) -> str:
    """One self-contained HTML page: figures embedded as data URIs, no network."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "segbench report")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>\n<body>\n'
        + "\n".join(_html_blocks(blocks))
        + f'\n<pre id="image-check"></pre>\n<script>{_CHECK_JS}</script>\n</body></html>\n'
    )
