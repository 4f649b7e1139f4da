"""PowerPoint decks (.pptx) through python-pptx (MIT): one page per slide.

* A slide's title is a heading (the section of the slide's text); the other shapes follow in
  reading order (top to bottom, then left to right; groups opened), each text frame one paragraph
  (its lines kept), each table one paragraph per row (cells joined with `` | ``).
* Speaker notes are kept apart: a paragraph of their own after the slide's content, in the
  slide's section.
* Passages carry the slide number as their page. The title is the deck's title property, else
  the first slide's title.
"""

from __future__ import annotations

from qa.ingest.formats.base import FormatParser, ParseOptions
from qa.ingest.formats.docx import table_rows
from qa.ingest.formats.office import Blocks, core_metadata, core_title, load_office
from qa.models import ParsedDocument

__all__ = ["PptxParser"]


def _shapes(shapes):
    """Shapes in reading order, groups opened."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    ordered = sorted(shapes, key=lambda s: ((s.top or 0) // 10_000, s.left or 0))
    for shape in ordered:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


class PptxParser(FormatParser):
    name = "pptx"
    label = "a PowerPoint deck"
    extensions = (".pptx",)

    def parse(self, raw: bytes, filename: str | None, options: ParseOptions) -> ParsedDocument:
        from pptx import Presentation

        label = repr(filename) if filename else "the PowerPoint deck"
        deck = load_office(raw, label, options, Presentation)
        slides = list(deck.slides)
        if len(slides) > options.max_pages:
            from qa.ingest.errors import DocumentTooLargeError

            raise DocumentTooLargeError(f"{label} has {len(slides)} slides, over the limit of {options.max_pages} "
                                        "(QA_MAX_DOCUMENT_PAGES)")
        blocks = Blocks()
        first_title = None
        for number, slide in enumerate(slides, start=1):
            blocks.page(number)
            title_shape = slide.shapes.title
            if title_shape is not None and title_shape.has_text_frame and title_shape.text_frame.text.strip():
                blocks.add("heading", title_shape.text_frame.text, 1)
                first_title = first_title or " ".join(title_shape.text_frame.text.split())
            for shape in _shapes(slide.shapes):
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                if getattr(shape, "has_table", False) and shape.has_table:
                    for row in table_rows(shape.table):
                        blocks.add("paragraph", row)
                elif shape.has_text_frame:
                    blocks.add("paragraph", shape.text_frame.text)
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None:
                    blocks.add("paragraph", notes.text)
        props = deck.core_properties
        return blocks.finish("pptx", options.title, core_title(props) or first_title, len(slides),
                             core_metadata(props))
