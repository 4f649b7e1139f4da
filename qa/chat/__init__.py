"""Chat answers with citations: the service behind /v1/chat/completions, the web page and the MCP ``ask`` tool."""

from qa.chat.answer import Citation
from qa.chat.service import EXTRACTIVE_MODEL, MODEL, MODELS, ChatAnswer, ChatInputError, ChatService

__all__ = ["Citation", "ChatAnswer", "ChatInputError", "ChatService", "EXTRACTIVE_MODEL", "MODEL", "MODELS"]
