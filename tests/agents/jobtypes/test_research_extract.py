"""Pages become a title and readable text."""

from __future__ import annotations

from easyclaw.agents.jobtypes.research_extract import decode, extract_html, extract_plain
from tests.support.web_pages import ARTICLE_HTML, LATIN1_HTML, PLAIN_TEXT


def test_html_gives_title_and_text_without_scripts_or_styles() -> None:
    page = extract_html(ARTICLE_HTML)
    assert page.title == "Octopus intelligence & play"
    assert page.text.splitlines() == [
        "Home",
        "Octopuses are clever",
        "They open jars, solve mazes and recognise people.",
        "Each arm has its own neurons \u2014 about two thirds of them.",
        "Eight arms",
        "Three hearts",
    ]
    for hidden in ("tracking", "color: red", "Enable JavaScript"):
        assert hidden not in page.text


def test_plain_text_keeps_its_lines() -> None:
    page = extract_plain(PLAIN_TEXT)
    assert page.title is None
    assert page.text == "Release notes\nversion 1.2: faster claims"


def test_charset_comes_from_the_header_or_the_page() -> None:
    body = LATIN1_HTML.encode("latin-1")
    assert extract_html(decode(body, None)).title == "Caf\xe9"
    assert "cr\xe8me" in extract_html(decode(body, "iso-8859-1")).text
    assert decode(b"caf\xc3\xa9", "no-such-charset") == "caf\xe9"


def test_a_head_left_open_does_not_hide_the_body() -> None:
    page = extract_html("<html><head><title>T</title><body><p>visible</p>")
    assert page.title == "T"
    assert page.text == "visible"
