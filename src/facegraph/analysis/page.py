"""A static HTML page from headings, paragraphs, figures and tables: no scripts, no external resources, relative
image links, so it opens from disk anywhere the folder is copied."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Sequence, Union


@dataclass(frozen=True)
class PageFigure:
    src: str  # file name relative to the page
    alt: str
    caption: str
    width: int
    height: int


@dataclass(frozen=True)
class PageTable:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # drawn as a remark (missing data, skipped analysis)


@dataclass
class Section:
    heading: str
    anchor: str = ""
    level: int = 2
    items: list[Union["Section", PageFigure, PageTable, Paragraph]] = field(default_factory=list)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2.2rem; } h3 { margin-top: 1.6rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #444; max-width: 1000px; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
p.note { color: #7a4b00; background: #fff7e6; padding: 0.4rem 0.6rem; border-left: 3px solid #e0a030; }
nav ul { columns: 2; } .table-scroll { overflow-x: auto; }
"""


def _render_item(item: Section | PageFigure | PageTable | Paragraph) -> str:
    if isinstance(item, Section):
        return render_section(item)
    if isinstance(item, PageFigure):
        return (f'<figure><a href="{html.escape(item.src)}"><img src="{html.escape(item.src)}" alt="{html.escape(item.alt)}" '
                f'width="{item.width}" height="{item.height}"></a><figcaption>{html.escape(item.caption)}</figcaption></figure>')
    if isinstance(item, PageTable):
        caption = f"<caption>{html.escape(item.caption)}</caption>" if item.caption else ""
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in item.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in item.rows)
        return f'<div class="table-scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    css_class = ' class="note"' if item.note else ""
    return f"<p{css_class}>{html.escape(item.text)}</p>"


def render_section(section: Section) -> str:
    anchor = f' id="{html.escape(section.anchor)}"' if section.anchor else ""
    heading = f"<h{section.level}{anchor}>{html.escape(section.heading)}</h{section.level}>"
    return "\n".join([heading, *(_render_item(item) for item in section.items)])


def render_page(title: str, intro: Sequence[Paragraph], sections: Sequence[Section]) -> str:
    """The whole page; a table of contents links to every top-level section that has an anchor."""
    contents = "".join(f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.heading)}</a></li>' for s in sections if s.anchor)
    body = "\n".join(render_section(section) for section in sections)
    # The empty data: icon stops the browser from asking for /favicon.ico, which does not exist beside a file.
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(_render_item(p) for p in intro)
        + f"\n<nav><ul>{contents}</ul></nav>\n{body}\n</body>\n</html>\n"
    )
