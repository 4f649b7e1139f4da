"""Documents and collections: the service every interface (HTTP, MCP, CLI) reaches them through."""

from qa.documents.service import DocumentNotFoundError, DocumentService, FolderReport, Skipped

__all__ = ["DocumentNotFoundError", "DocumentService", "FolderReport", "Skipped"]
