"""A report as a page: tables, figures and sections, written as Markdown and as one HTML file.

The HTML is self-contained (CSS inline, figures as base64 PNG data URIs, no scripts, no links to
anything), so the one file can be mailed, archived or printed as it is. The Markdown references
the PNG files written beside it.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    """A titled table of text cells; a newline in a cell starts a smaller second line."""

    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    """A PNG figure: written to ``filename`` beside the Markdown, embedded in the HTML."""

    filename: str
    caption: str
    png: bytes


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Gallery:
    """Small figures side by side (confusion matrices)."""

    images: list[Image]


Block = str | Table | Image | Bullets | Gallery  # a str is a paragraph


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    css_class: str = ""


def fmt(value: float | None, digits: int = 4) -> str:
    """A number, or "–" for a missing one (an older run that did not log it) or NaN."""
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def signed(value: float, digits: int = 4) -> str:
    """A difference with its sign, a true minus: "+0.0100", "−0.2600"."""
    return f"{value:+.{digits}f}".replace("-", "\N{MINUS SIGN}")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
 max-width:66rem;margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .8rem}
h2{font-size:1.25rem;border-bottom:2px solid #d0d7de;padding-bottom:.2rem;margin:2rem 0 .6rem}
h3{font-size:1rem;margin:1.1rem 0 .35rem}
.block{overflow-x:auto}
table{border-collapse:collapse;margin:0 0 .9rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 7px;vertical-align:top}
th{background:#f3f5f7;text-align:left;font-weight:600}
td{text-align:left}
td.num{text-align:right;white-space:nowrap}
td:first-child{min-width:8rem}
td small{display:block;color:#59636e;font-size:.82em}
.summary{background:#f6f8fa;border-left:4px solid #0969da;padding:.2rem 1rem .6rem;margin-top:1rem}
.summary h2{border:0;margin-top:.8rem}
figure{margin:.4rem 0 1rem}
figure img{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#59636e}
.gallery{display:flex;flex-wrap:wrap;gap:.3rem 1rem}
.gallery figure{width:15rem;margin:0 0 .6rem}
@page{margin:12mm}
@media print{
 body{max-width:none;margin:0;padding:0;font-size:8.5pt;color:#000}
 h2,h3{break-after:avoid;page-break-after:avoid}
 .block,figure,.gallery figure,tr{break-inside:avoid;page-break-inside:avoid}
 .block{overflow:visible}
 thead{display:table-header-group}
 th,td{padding:2px 4px}
 td.num{white-space:normal}
 .summary{border-left-width:2px}
 .gallery figure{width:31%}
}
"""


def write_page(out: Path, title: str, sections: list[Section]) -> Path:
    """Write ``out/report.md``, ``out/report.html`` and every figure's PNG file; returns the .md."""
    for image in _images(sections):
        (out / image.filename).write_bytes(image.png)
    md = [f"# {title}", ""]
    page = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        md += [f"## {section.title}", ""] + [_md(block) for block in section.blocks]
        inner = "".join(_html(block) for block in section.blocks)
        css = f' class="{section.css_class}"' if section.css_class else ""
        page.append(f"<section{css}><h2>{html.escape(section.title)}</h2>{inner}</section>")
    (out / "report.md").write_text("\n".join(md))
    head = f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    body = "".join(page)
    (out / "report.html").write_text(f"{head}<style>{CSS}</style></head><body>{body}</body></html>\n")
    return out / "report.md"


def _images(sections: list[Section]) -> list[Image]:
    found = []
    for block in (b for s in sections for b in s.blocks):
        found += block.images if isinstance(block, Gallery) else [block] if isinstance(block, Image) else []
    return found


def _md(block: Block) -> str:
    if isinstance(block, Table):
        lines = [f"### {block.title}", "", _md_row(block.header), "|" + "---|" * len(block.header)]
        return "\n".join(lines + [_md_row(row) for row in block.rows]) + "\n"
    if isinstance(block, Image):
        return f"![{block.caption}]({block.filename})\n"
    if isinstance(block, Gallery):
        return "\n".join(f"![{i.caption}]({i.filename})" for i in block.images) + "\n"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items) + "\n"
    return block + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _md_cell(text: str) -> str:
    first, *more = text.replace("|", "\\|").split("\n")
    return first + "".join(f" ({m})" for m in more)


def _html(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
        return (
            f'<div class="block"><h3>{html.escape(block.title)}</h3>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
    if isinstance(block, Image):
        return _figure(block)
    if isinstance(block, Gallery):
        return '<div class="gallery">' + "".join(map(_figure, block.images)) + "</div>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    return f"<p>{html.escape(block)}</p>"


_NUMBER = re.compile(r"^[-+\N{MINUS SIGN}]?\d|^\N{EN DASH}$")


def _html_cell(text: str) -> str:
    first, *more = text.split("\n")
    css = ' class="num"' if _NUMBER.match(first) else ""
    return (
        f"<td{css}>{html.escape(first)}" + "".join(f"<small>{html.escape(m)}</small>" for m in more) + "</td>"
    )


def _figure(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    alt = html.escape(image.caption, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(image.caption)}</figcaption></figure>"
    )
