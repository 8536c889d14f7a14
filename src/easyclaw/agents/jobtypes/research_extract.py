"""Title and readable text of a fetched page (standard library HTML parser).

Scripts, styles and other non-content elements are dropped; block elements
become line breaks and runs of whitespace collapse, so the text reads like
the page does in a browser's reader view, minus the layout.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from html.parser import HTMLParser

SKIPPED = frozenset(
    {"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "head"}
)
BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "td", "th", "tr", "ul",
    }
)  # fmt: skip
VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "source"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


@dataclass(frozen=True, kw_only=True, slots=True)
class PageText:
    title: str | None
    text: str


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title_parts: list[str] = []
        self.parts: list[str] = []
        self.in_title = False
        self.skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag == "body":  # a <head> left open ends where the body starts
            self.skipping = [open_tag for open_tag in self.skipping if open_tag != "head"]
        elif tag in SKIPPED and tag not in VOID:
            self.skipping.append(tag)
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self.skipping:
            # Close the innermost open element of this name (tolerates sloppy HTML).
            index = len(self.skipping) - 1 - self.skipping[::-1].index(tag)
            del self.skipping[index:]
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)
        elif not self.skipping:
            self.parts.append(data)


def readable_lines(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def decode(body: bytes, charset: str | None) -> str:
    """The body as text: the declared charset, else a ``<meta charset>``, else UTF-8."""
    if charset is None:
        found = _META_CHARSET.search(body[:4096])
        charset = found.group(1).decode("ascii") if found else None
    try:
        codecs.lookup(charset or "utf-8")
    except LookupError:
        charset = None
    return body.decode(charset or "utf-8", errors="replace")


def extract_html(html: str) -> PageText:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    title = " ".join("".join(reader.title_parts).split()) or None
    return PageText(title=title, text=readable_lines("".join(reader.parts)))


def extract_plain(text: str) -> PageText:
    return PageText(title=None, text=readable_lines(text))
