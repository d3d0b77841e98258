"""A report as a list of sections of simple blocks, rendered once to Markdown and once to HTML.

Keeping the content in one structure means report.md and report.html say the same thing: the HTML is
not a conversion of the Markdown, both are renderings of these blocks. Images are PNG files next to
report.md, and embedded as base64 data URIs in the HTML so it stands alone.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    align: list[str] | None = None
    """Per column, ``l`` or ``r``; default: first column left, the others right."""


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""


Block = Union[Paragraph, Bullets, Table, Image, Code]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    anchor: str = ""

    def add(self, block: Block) -> "Section":
        self.blocks.append(block)
        return self


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)


# --- Markdown ----------------------------------------------------------------------------------------


def to_markdown(doc: Document, image_dir: Path) -> str:
    """Markdown with images linked relative to `image_dir` (where report.md is written)."""
    out = [f"# {doc.title}", ""]
    for section in doc.sections:
        out += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            out += _md_block(block, image_dir) + [""]
    return "\n".join(out).rstrip() + "\n"


def _md_block(block: Block, image_dir: Path) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        align = block.align or ["l"] + ["r"] * (len(block.header) - 1)
        lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |"]
        lines.append("|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return lines
    if isinstance(block, Image):
        try:
            target = block.path.relative_to(image_dir)
        except ValueError:
            target = block.path
        return [f"![{block.alt}]({target.as_posix()})"]
    if isinstance(block, Code):
        fence = "~~~~" if "```" in block.text else "```"
        return [f"{fence}{block.language}", block.text.rstrip("\n"), fence]
    raise TypeError(f"unknown block {block!r}")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- HTML --------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .35em .6em; }
th { background: #f4f4f4; }
td.r, th.r { text-align: right; white-space: nowrap; }
td.l, th.l { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .5em 0; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.85em; }
nav ul { columns: 2; }
"""


def to_html(doc: Document) -> str:
    """One self-contained HTML page: styles inline, PNGs embedded as data URIs."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(doc.title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{esc(doc.title)}</h1>",
        "<nav><ul>",
    ]
    anchors = []
    for index, section in enumerate(doc.sections):
        anchor = section.anchor or f"s{index}"
        anchors.append(anchor)
        if section.level == 2:
            parts.append(f'<li><a href="#{esc(anchor)}">{esc(section.title)}</a></li>')
    parts.append("</ul></nav>")
    for anchor, section in zip(anchors, doc.sections):
        level = min(max(section.level, 2), 6)
        parts.append(f'<section id="{esc(anchor)}"><h{level}>{esc(section.title)}</h{level}>')
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_block(block: Block) -> str:
    esc = html.escape
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        align = block.align or ["l"] + ["r"] * (len(block.header) - 1)
        head = "".join(f'<th class="{a}">{_inline(h)}</th>' for h, a in zip(block.header, align))
        body = "".join(
            "<tr>" + "".join(f'<td class="{a}">{_inline(c)}</td>' for c, a in zip(row, align)) + "</tr>"
            for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        return f'<figure><img alt="{esc(block.alt)}" src="data:image/png;base64,{data}"><figcaption>{esc(block.alt)}</figcaption></figure>'
    if isinstance(block, Code):
        return f"<pre><code>{esc(block.text)}</code></pre>"
    raise TypeError(f"unknown block {block!r}")


def _inline(text: str) -> str:
    """Escape, then render the little inline Markdown the report uses: `code` and **bold**."""
    import re

    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return out
