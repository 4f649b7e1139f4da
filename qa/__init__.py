"""qa: bilingual (Chinese/English) semantic question answering with precise citations."""

__version__ = "0.1.0"
