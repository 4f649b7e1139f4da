"""Chat answers over the search: the last user message is the question, the answer cites passages.

Two ways to answer, one shape of result (:class:`ChatAnswer`: text, numbered citations,
``answerable``, ``confidence``):

* **extractive** (no language model configured, or model ``qa-extractive``): the best evidence
  sentences quoted with ``[n]`` markers, then the sources (:mod:`qa.chat.answer`);
* **generated** (``QA_LLM_BASE_URL`` set, model ``qa``): the numbered passages and the question go to
  the upstream model, which must answer from them with ``[n]`` markers; the same sources follow.
  If the upstream fails or times out the extractive answer is returned, after a short note.

When the search says the documents do not answer (``answerable`` false) the reply is a plain
refusal in the question's language, no language model is called and no citations are given.

Follow-up questions: when the last user message looks like a follow-up (very short, or it refers
back with a pronoun such as "it", "they", "它", "这些"), the previous user message is put in front
of it *for retrieval only* ("上海的人工智能目标是什么？" then "具体有哪些措施？" searches for both).
The answer is still about the last message; the query actually searched is returned as
``retrieval_query``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import jieba

from qa.chat.answer import (
    FALLBACK_NOTE,
    REFUSAL,
    Citation,
    citations_for,
    extractive_answer,
    lang_key,
    sources_block,
)
from qa.chat.upstream import UpstreamError, UpstreamLLM, build_messages
from qa.retrieval.search import SearchService
from qa.retrieval.types import SearchRequest, SearchResult
from qa.store.base import DEFAULT_COLLECTION
from qa.text.lang import detect_lang

log = logging.getLogger(__name__)

MODEL = "qa"
EXTRACTIVE_MODEL = "qa-extractive"
MODELS = (MODEL, EXTRACTIVE_MODEL)  # over the default collection; "qa/<collection>" chooses another one


def split_model(model: str) -> tuple[str, str]:
    """``"qa/hr-handbook"`` → ``("qa", "hr-handbook")``; a bare ``"qa"`` asks the default collection."""
    base, _, collection = model.partition("/")
    return base, collection or DEFAULT_COLLECTION


def collection_models(collections: Sequence[str]) -> list[str]:
    """The chat model names offered: ``qa`` and ``qa-extractive`` (default collection) and one ``qa/<name>``
    per other collection."""
    return [*MODELS, *(f"{MODEL}/{name}" for name in collections if name != DEFAULT_COLLECTION)]

FOLLOW_UP_EN_WORDS = 4  # an English question of at most this many words is taken as a follow-up
FOLLOW_UP_ZH_CHARS = 6  # a Chinese question of at most this many characters likewise
_EN_REFERRING = frozenset("it its they them their this that these those he him his she her there such".split())
_ZH_REFERRING = frozenset("它 它们 他 他们 她 她们 这 那 这个 那个 这些 那些 这里 那里 该 其 此 上述".split())
_EN_WORD = re.compile(r"[A-Za-z']+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class ChatInputError(ValueError):
    """The conversation cannot be answered as given (no user message, empty question, unknown model)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


@dataclass
class ChatAnswer:
    text: str
    citations: list[Citation]
    answerable: bool
    confidence: float
    lang: str
    mode: str  # "extractive" | "generated" | "fallback" | "refusal"
    question: str
    retrieval_query: str
    notes: list[str] = field(default_factory=list)


def _text_of(message: dict) -> str:
    return message.get("content") or ""


def is_follow_up(question: str) -> bool:
    """Short, or refers back with a pronoun ("What about them?", "它的目标呢？")."""
    if detect_lang(question) == "zh":
        if len(_CJK.findall(question)) <= FOLLOW_UP_ZH_CHARS:
            return True
        return any(word in _ZH_REFERRING for word in jieba.lcut(question))
    words = [w.lower() for w in _EN_WORD.findall(question)]
    return len(words) <= FOLLOW_UP_EN_WORDS or any(w in _EN_REFERRING for w in words)


def resolve_question(messages: Sequence[dict]) -> tuple[str, str]:
    """(question, retrieval query): the last user message, and what to search for it."""
    users = [_text_of(m).strip() for m in messages if m.get("role") == "user"]
    if not users:
        raise ChatInputError("messages must contain at least one message with role 'user'", "messages",
                             "missing_user_message")
    question = users[-1]
    if not question:
        raise ChatInputError("the last user message is empty: ask a question in Chinese or English", "messages",
                             "empty_question")
    previous = next((u for u in reversed(users[:-1]) if u), None)
    if previous and is_follow_up(question):
        return question, f"{previous} {question}"
    return question, question


class ChatService:
    def __init__(self, search: SearchService, upstream: UpstreamLLM | None = None, top_k: int = 5,
                 max_query_chars: int = 2000):
        self.search = search
        self.upstream = upstream
        self.top_k = top_k
        self.max_query_chars = max_query_chars

    @property
    def models(self) -> tuple[str, ...]:
        return MODELS

    def offered(self, collections: Sequence[str] | None = None) -> list[str]:
        """The model names offered for ``collections`` (default: every collection)."""
        if collections is None:
            collections = [c.name for c in self.search.corpus.store.list_collections()]
        return collection_models(collections)

    def check_model(self, model: str | None, sees: Callable[[str], bool] | None = None) -> str:
        """``model`` (default ``qa``) when it names a chat model over a collection that exists (and that
        ``sees`` accepts: one it does not is answered as missing), else a 404 naming those offered."""
        model = model or MODEL
        base, collection = split_model(model)
        if base not in MODELS or (sees is not None and not sees(collection)) \
                or self.search.corpus.store.get_collection(collection) is None:
            offered = [m for m in self.offered() if sees is None or sees(split_model(m)[1])]
            raise ChatInputError(f"The model {model!r} does not exist; this service offers "
                                 f"{', '.join(offered) or 'no model to this key'}", "model", "model_not_found",
                                 status=404)
        return model

    def retrieve(self, messages: Sequence[dict], collection: str = DEFAULT_COLLECTION) -> tuple[str, str, SearchResult]:
        question, query = resolve_question(messages)
        # An over-long message (a pasted text, a frontend's task prompt) is searched by its start.
        result = self.search.search(SearchRequest(query=query[: self.max_query_chars], top_k=self.top_k,
                                                  collection=collection))
        return question, query, result

    def answer(self, messages: Sequence[dict], model: str | None = None, with_sources: bool = True) -> ChatAnswer:
        """The whole answer at once (the upstream model, if used, is asked without streaming)."""
        final = None
        for event in self.events(messages, model, with_sources, stream_upstream=False):
            if isinstance(event, ChatAnswer):
                final = event
        assert final is not None
        return final

    def stream(self, messages: Sequence[dict], model: str | None = None, with_sources: bool = True
               ) -> Iterator[str | ChatAnswer]:
        """Text pieces as they are ready, then the finished :class:`ChatAnswer` (whose text is their join)."""
        return self.events(messages, model, with_sources, stream_upstream=True)

    def events(self, messages: Sequence[dict], model: str | None, with_sources: bool, stream_upstream: bool
               ) -> Iterator[str | ChatAnswer]:
        model = self.check_model(model)
        base, collection = split_model(model)
        question, query, result = self.retrieve(messages, collection)
        lang = lang_key(detect_lang(question))
        done = dict(answerable=result.answerable, confidence=result.confidence, lang=lang, question=question,
                    retrieval_query=query)

        if not result.answerable or not result.hits:
            text = REFUSAL[lang]
            yield text
            yield ChatAnswer(text=text, citations=[], mode="refusal", **done)
            return

        if self.upstream is None or base == EXTRACTIVE_MODEL:
            text, citations = extractive_answer(result, lang, with_sources)
            yield from _pieces(text)
            yield ChatAnswer(text=text, citations=citations, mode="extractive", **done)
            return

        citations = citations_for(result.hits)
        prompt = build_messages(question, citations, _history(messages))
        parts: list[str] = []
        try:
            if stream_upstream:
                for delta in self.upstream.stream(prompt):
                    parts.append(delta)
                    yield delta
            else:
                reply = self.upstream.complete(prompt)
                parts.append(reply)
                yield reply
            if not "".join(parts).strip():
                raise UpstreamError("the language model returned an empty answer")
        except UpstreamError as exc:
            log.warning("upstream language model failed (%s): answering extractively", exc)
            text, citations = extractive_answer(result, lang, with_sources)
            lead = "\n\n" if parts else ""
            fallback = f"{lead}{FALLBACK_NOTE[lang]}\n\n{text}"
            yield from _pieces(fallback)
            yield ChatAnswer(text="".join(parts) + fallback, citations=citations, mode="fallback",
                             notes=[f"upstream: {exc}"], **done)
            return
        text = "".join(parts)
        if with_sources:
            tail = "\n\n" + sources_block(citations, lang)
            yield tail
            text += tail
        yield ChatAnswer(text=text, citations=citations, mode="generated", **done)


def _history(messages: Sequence[dict]) -> list[dict]:
    """Earlier user/assistant turns (everything before the last user message)."""
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    return [{"role": m["role"], "content": _text_of(m)} for m in messages[:last_user]
            if m.get("role") in ("user", "assistant") and _text_of(m)]


def _pieces(text: str) -> Iterator[str]:
    """Line by line, so an extractive answer streams in like a generated one."""
    yield from re.findall(r"[^\n]*\n|[^\n]+", text)
