"""The text formats (plain text, Markdown, HTML) as format parsers; the parsing is qa.ingest.parsers."""

from __future__ import annotations

from qa.ingest.formats.base import FormatParser, ParseOptions
from qa.ingest.parsers import parse_text
from qa.models import ParsedDocument

__all__ = ["PlainTextParser", "MarkdownParser", "HtmlParser"]


class _TextFormat(FormatParser):
    def parse(self, raw: bytes | str, filename: str | None, options: ParseOptions) -> ParsedDocument:
        return parse_text(raw, self.name, title=options.title, heading_max_chars=options.heading_max_chars)


class PlainTextParser(_TextFormat):
    name = "text"
    label = "a text file"
    extensions = (".txt",)


class MarkdownParser(_TextFormat):
    name = "markdown"
    label = "a Markdown file"
    extensions = (".md", ".markdown")


class HtmlParser(_TextFormat):
    name = "html"
    label = "an HTML file"
    extensions = (".html", ".htm")
