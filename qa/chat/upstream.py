"""The optional upstream language model: any OpenAI-compatible chat endpoint, via the official client.

The model only ever sees the numbered passages the search found and is told to answer from them
alone, with ``[n]`` markers, or to say that the documents do not answer. ``max_retries=0``: a slow
or failing upstream falls back to the extractive answer after one ``llm_timeout_s``, not three.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from qa.chat.answer import Citation

SYSTEM_PROMPT = (
    "You answer questions about a collection of documents, using ONLY the numbered passages given with "
    "the question. Rules:\n"
    "1. Every statement must come from the passages; cite it with the passage number in square brackets, "
    "e.g. [1] or [2][3]. Never use outside knowledge.\n"
    "2. If the passages do not contain the answer, reply only that the documents do not answer the question "
    "(in English: \"The documents do not answer this question.\"; in Chinese: \"文档中没有找到这个问题的答案。\").\n"
    "3. Answer in the language of the question (Chinese or English), briefly. Do not list the sources; "
    "they are added after your answer."
)

HISTORY_TURNS = 6
HISTORY_CHARS = 4000


class UpstreamError(RuntimeError):
    """The upstream model timed out, refused the request or returned nothing usable."""


def format_passages(citations: Sequence[Citation]) -> str:
    blocks = []
    for c in citations:
        where = " › ".join(x for x in (c.title, c.section or "", f"paragraph {c.paragraph}") if x)
        blocks.append(f"[{c.index}] ({where})\n{c.text}")
    return "\n\n".join(blocks)


def build_messages(question: str, citations: Sequence[Citation], history: Sequence[dict] = ()) -> list[dict]:
    """System prompt, the last few earlier turns (for follow-ups), then the passages and the question."""
    recent = [
        {"role": m["role"], "content": m["content"][:HISTORY_CHARS]}
        for m in list(history)[-HISTORY_TURNS:] if m.get("role") in ("user", "assistant") and m.get("content")
    ]
    user = f"Passages:\n\n{format_passages(citations)}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, *recent, {"role": "user", "content": user}]


class UpstreamLLM:
    def __init__(self, base_url: str, api_key: str | None, model: str, timeout_s: float):
        from openai import OpenAI  # here: a second of start-up (its types) that a service without QA_LLM_BASE_URL never needs

        self.model = model
        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)

    def complete(self, messages: list[dict]) -> str:
        try:
            reply = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0)
            text = reply.choices[0].message.content if reply.choices else None
        except Exception as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        if not text or not text.strip():
            raise UpstreamError("the language model returned an empty answer")
        return text.strip()

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """Content deltas as they arrive; :class:`UpstreamError` on any failure (also mid-stream)."""
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0, stream=True
            )
            with stream:
                for chunk in stream:
                    for choice in chunk.choices or ():
                        if choice.delta and choice.delta.content:
                            yield choice.delta.content
        except GeneratorExit:
            raise
        except Exception as exc:
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
