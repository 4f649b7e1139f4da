"""The OpenAI-compatible chat API, driven by the official ``openai`` client against real ``qa serve`` processes.

* quality (slow, EmbeddingGemma): Chinese and English questions, plain and streamed, cite the right
  paragraph; unrelated questions get the refusal; a follow-up is resolved with the previous question;
* behaviour (USE-m): malformed requests get OpenAI-style 4xx bodies; /v1/models; /v1/embeddings;
* the upstream language model: a tiny OpenAI-compatible server started here records what the service
  sends (passages + question) and answers, sleeps past the timeout, or fails with 500 — the last two
  must give the extractive answer with a note, and a stream that still ends with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai import OpenAI

from conftest import SEEDS_DIR, QAServer, free_port, running_server
from qa.chat.answer import FALLBACK_NOTE, REFUSAL
from qa.chat.service import is_follow_up, resolve_question

SEED_DOC = "000_cf4ae71d46783a76"


def client_for(server: QAServer) -> OpenAI:
    return OpenAI(base_url=f"{server.base_url}/v1", api_key="any-key", timeout=180, max_retries=0)


def ask(client: OpenAI, question: str, **kw):
    return client.chat.completions.create(model=kw.pop("model", "qa"),
                                          messages=[{"role": "user", "content": question}], **kw)


def ask_streamed(client: OpenAI, question: str | list[dict], **kw) -> tuple[str, list, object]:
    """(the joined text, all chunks, the last chunk) of a streamed answer."""
    messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
    stream = client.chat.completions.create(model=kw.pop("model", "qa"), messages=messages, stream=True, **kw)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, chunks[-1]


def raw_stream(server: QAServer, body: dict) -> list[str]:
    """The ``data:`` payloads of a streamed answer, read over plain HTTP."""
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json={**body, "stream": True},
                      timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: "):] for line in resp.iter_lines() if line.startswith("data: ")]


def check_citations(citations: list[dict], server: QAServer) -> None:
    """Every citation points at the exact text of its document, numbered 1..n."""
    assert [c["index"] for c in citations] == list(range(1, len(citations) + 1))
    for c in citations:
        doc = server.client.get(f"/v1/documents/{c['document_id']}").json()["text"]
        assert doc[c["start"]:c["end"]] == c["text"]
        ev = c["evidence"]
        assert c["start"] <= ev["start"] < ev["end"] <= c["end"]
        assert doc[ev["start"]:ev["end"]] == ev["text"]
        for key in ("passage_id", "title", "section", "paragraph", "score"):
            assert key in c


# --- pure logic ------------------------------------------------------------------------------------
def test_follow_up_detection():
    assert is_follow_up("导师呢？")
    assert is_follow_up("What about it?")
    assert is_follow_up("How many of them are there in total?")
    assert not is_follow_up("上海创智学院有多少研究生和导师？")
    assert not is_follow_up("How many graduate students does the Shanghai Innovation Institute have?")
    msgs = [{"role": "user", "content": "上海创智学院有多少研究生？"}, {"role": "assistant", "content": "190余名 [1]"},
            {"role": "user", "content": "导师呢？"}]
    assert resolve_question(msgs) == ("导师呢？", "上海创智学院有多少研究生？ 导师呢？")
    standalone = msgs[:2] + [{"role": "user", "content": "崇明区将发挥哪些产业优势和平台作用？"}]
    assert resolve_question(standalone)[1] == "崇明区将发挥哪些产业优势和平台作用？"


# --- quality: the real EmbeddingGemma service ---------------------------------------------------------
QUESTIONS = [
    ("上海创智学院有多少研究生？", "190余名研究生", "zh"),
    ("How many graduate students does the Shanghai Innovation Institute have?", "190余名研究生", "en"),
    ("崇明区将发挥哪些产业优势？", "船海产业", "zh"),
    ("What industrial strengths will Chongming district build on?", "崇明", "en"),
]


@pytest.mark.slow
@pytest.mark.parametrize("question,words,lang", QUESTIONS)
def test_plain_answer_cites_the_right_paragraph(gemma_server: QAServer, question, words, lang):
    reply = ask(client_for(gemma_server), question)
    data = reply.model_dump()
    assert reply.object == "chat.completion" and reply.model == "qa"
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.role == "assistant"
    assert data["answerable"] is True and 0.0 <= data["confidence"] <= 1.0
    citations = data["citations"]
    assert citations and words in citations[0]["text"], citations[:1]
    check_citations(citations, gemma_server)
    text = reply.choices[0].message.content
    assert "[1]" in text and citations[0]["evidence"]["text"] in text
    assert text.startswith("根据文档" if lang == "zh" else "According to the documents")
    assert ("来源：" if lang == "zh" else "Sources:") in text
    assert citations[0]["title"] in text


@pytest.mark.slow
@pytest.mark.parametrize("question,words,lang", QUESTIONS)
def test_streamed_answer_cites_the_right_paragraph(gemma_server: QAServer, question, words, lang):
    text, chunks, last = ask_streamed(client_for(gemma_server), question)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert last.choices[0].finish_reason == "stop"
    extra = last.model_extra
    assert extra["answerable"] is True
    assert extra["citations"] and words in extra["citations"][0]["text"]
    assert "[1]" in text and extra["citations"][0]["evidence"]["text"] in text
    # the same answer as the plain request
    plain = ask(client_for(gemma_server), question)
    assert plain.choices[0].message.content == text
    assert [c["passage_id"] for c in plain.model_dump()["citations"]] == [c["passage_id"] for c in extra["citations"]]


@pytest.mark.slow
@pytest.mark.parametrize("question,lang", [
    ("What is the recipe for chocolate cake?", "en"),
    ("法国的首都是哪里？", "zh"),
])
def test_unrelated_question_is_refused(gemma_server: QAServer, question, lang):
    client = client_for(gemma_server)
    reply = ask(client, question)
    data = reply.model_dump()
    assert reply.choices[0].message.content == REFUSAL[lang]
    assert data["answerable"] is False and data["citations"] == []
    text, _, last = ask_streamed(client, question)
    assert text == REFUSAL[lang]
    assert last.model_extra["answerable"] is False and last.model_extra["citations"] == []


@pytest.mark.slow
def test_follow_up_uses_the_previous_question(gemma_server: QAServer):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "上海创智学院有多少研究生？"},
        {"role": "assistant", "content": "190余名研究生 [1]"},
        {"role": "user", "content": "导师呢？"},
    ]
    reply = client_for(gemma_server).chat.completions.create(model="qa", messages=messages)
    data = reply.model_dump()
    assert data["retrieval_query"] == "上海创智学院有多少研究生？ 导师呢？"
    assert data["answerable"] is True
    assert "70多位导师" in data["citations"][0]["text"]


@pytest.mark.slow
def test_list_of_text_parts_is_accepted(gemma_server: QAServer):
    reply = client_for(gemma_server).chat.completions.create(model="qa-extractive", messages=[
        {"role": "user", "content": [{"type": "text", "text": "上海创智学院"}, {"type": "text", "text": "有多少研究生？"}]},
    ])
    assert "190余名研究生" in reply.model_dump()["citations"][0]["text"]
    assert reply.model == "qa-extractive"


# --- behaviour: malformed requests, models, embeddings (USE-m) ----------------------------------------
def assert_openai_error(resp: httpx.Response, status: int = 400, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error" and error["message"].strip()
    if param is not None:
        assert error["param"] == param, error
    return error


@pytest.mark.parametrize("body,param", [
    ({}, "messages"),
    ({"model": "qa", "messages": []}, "messages"),
    ({"model": "qa", "messages": "hello"}, "messages"),
    ({"model": "qa", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"model": "qa", "messages": [{"content": "hi"}]}, "messages.0.role"),
    ({"model": "qa", "messages": [{"role": "system", "content": "be brief"}]}, "messages"),
    ({"model": "qa", "messages": [{"role": "user", "content": "   "}]}, "messages"),
    ({"model": "qa", "messages": [{"role": "user", "content": 42}]}, "messages.0.content"),
    ({"model": "qa", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content"),
    ({"model": "qa", "messages": [{"role": "user", "content": "x" * 1_000_000}]}, "messages.0.content"),
    ({"model": "qa", "messages": [{"role": "user", "content": "hi"}], "stream": "sometimes"}, "stream"),
    ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model"),
])
def test_malformed_requests_get_openai_errors(fast_server: QAServer, body, param):
    resp = fast_server.client.post("/v1/chat/completions", json=body)
    assert_openai_error(resp, 400, param)


def test_malformed_json_and_unknown_model(fast_server: QAServer):
    resp = fast_server.client.post("/v1/chat/completions", content=b"{not json",
                                   headers={"content-type": "application/json"})
    assert_openai_error(resp, 400)
    resp = fast_server.client.post("/v1/chat/completions",
                                   json={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    assert assert_openai_error(resp, 404, "model")["code"] == "model_not_found"
    # the rest of the API keeps its own error format
    resp = fast_server.client.post("/v1/search", json={})
    assert resp.status_code == 422 and set(resp.json()["error"]) == {"type", "message"}


def test_openai_client_raises_bad_request(fast_server: QAServer):
    client = client_for(fast_server)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="qa", messages=[])
    assert info.value.status_code == 400 and info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="qa", messages=[{"role": "user", "content": "好" * 40_000}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_models(fast_server: QAServer):
    client = client_for(fast_server)
    ids = [m.id for m in client.models.list()]
    assert ids == ["qa", "qa-extractive"]
    assert client.models.retrieve("qa").id == "qa"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_embeddings(fast_server: QAServer):
    client = client_for(fast_server)
    texts = ["上海创智学院有190余名研究生。", "The institute has more than 190 graduate students.", "香蕉是黄色的。"]
    as_b64 = client.embeddings.create(model="qa", input=texts)  # the client asks for base64 and decodes it
    as_float = client.embeddings.create(model="qa", input=texts, encoding_format="float")
    assert [d.index for d in as_float.data] == [0, 1, 2]
    a = np.array([d.embedding for d in as_b64.data])
    b = np.array([d.embedding for d in as_float.data])
    assert a.shape == (3, 512) and np.allclose(a, b, atol=1e-6)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
    assert b[0] @ b[1] > b[0] @ b[2]  # the translation is nearer than the unrelated sentence
    assert as_float.usage.prompt_tokens > 0 and as_float.model.startswith("use-m")
    single = client.embeddings.create(model="qa", input=texts[0], encoding_format="float")
    assert np.allclose(single.data[0].embedding, b[0], atol=1e-6)
    query = fast_server.client.post("/v1/embeddings", json={"input": texts[0], "input_type": "query"}).json()
    assert len(query["data"][0]["embedding"]) == 512
    raw = fast_server.client.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, b[0], atol=1e-6)


@pytest.mark.parametrize("body,param", [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": [1, 2, 3]}, "input"),
    ({"input": ["ok", ""]}, "input"),
    ({"input": "x" * 40_000}, "input"),
    ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "hi", "dimensions": 3}, "dimensions"),
])
def test_embeddings_malformed(fast_server: QAServer, body, param):
    assert_openai_error(fast_server.client.post("/v1/embeddings", json=body), 400, param)


def test_embeddings_unknown_model(fast_server: QAServer):
    error = assert_openai_error(fast_server.client.post("/v1/embeddings", json={"input": "hi", "model": "ada"}), 404)
    assert error["param"] == "model" and error["code"] == "model_not_found"


# --- the upstream language model ------------------------------------------------------------------------
UPSTREAM_REPLY = "上海创智学院有190余名研究生 [1]。"


class FakeUpstream:
    """A tiny OpenAI-compatible server on 127.0.0.1 that records each request it gets.

    ``mode``: "ok" answers (plain or streamed), "sleep" waits 8 s first, "error" answers 500.
    """

    def __init__(self):
        self.mode = "ok"
        self.requests: list[dict] = []
        self.port = free_port()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request):
            body = await request.json()
            self.requests.append({"body": body, "headers": dict(request.headers)})
            if self.mode == "sleep":
                await asyncio.sleep(8)
            if self.mode == "error":
                return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error"}}, 500)
            base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
            if not body.get("stream"):
                return {**base, "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": UPSTREAM_REPLY}, "finish_reason": "stop"}]}

            async def events():
                for piece in (UPSTREAM_REPLY[:6], UPSTREAM_REPLY[6:]):
                    chunk = {**base, "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "fake upstream did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    upstream.mode = "ok"
    upstream.requests.clear()
    return upstream


@pytest.fixture(scope="module")
def llm_server(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAServer]:
    """USE-m (fast) with every question answerable, and the fake upstream model with a 2 s timeout."""
    yield from running_server("llm", tmp_path_factory, QA_EMBEDDER="use-m", QA_ANSWERABLE_THRESHOLD="0",
                              QA_LLM_BASE_URL=upstream.base_url, QA_LLM_API_KEY="sk-test", QA_LLM_MODEL="fake-model",
                              QA_LLM_TIMEOUT_S="2")


QUESTION = "上海创智学院有多少研究生？"


def test_upstream_gets_passages_and_question(llm_server: QAServer, fake: FakeUpstream):
    reply = ask(client_for(llm_server), QUESTION)
    data = reply.model_dump()
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    assert sent["body"]["model"] == "fake-model"
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    messages = sent["body"]["messages"]
    assert messages[0]["role"] == "system" and "ONLY" in messages[0]["content"]
    prompt = messages[-1]["content"]
    assert messages[-1]["role"] == "user" and QUESTION in prompt
    citations = data["citations"]
    assert citations and data["answer_mode"] == "generated"
    for c in citations:  # every passage went up, numbered as cited
        assert f"[{c['index']}] (" in prompt and c["text"] in prompt
    text = reply.choices[0].message.content
    assert text.startswith(UPSTREAM_REPLY) and "来源：" in text
    check_citations(citations, llm_server)


def test_upstream_streamed(llm_server: QAServer, fake: FakeUpstream):
    text, chunks, last = ask_streamed(client_for(llm_server), QUESTION)
    assert text.startswith(UPSTREAM_REPLY) and "来源：" in text
    assert fake.requests[0]["body"]["stream"] is True
    assert last.model_extra["citations"] and last.model_extra["answer_mode"] == "generated"
    assert last.choices[0].finish_reason == "stop"


def test_extractive_model_skips_the_upstream(llm_server: QAServer, fake: FakeUpstream):
    reply = ask(client_for(llm_server), QUESTION, model="qa-extractive")
    assert fake.requests == []
    assert reply.model_dump()["answer_mode"] == "extractive"
    assert reply.choices[0].message.content.startswith("根据文档")


@pytest.mark.parametrize("mode", ["sleep", "error"])
def test_upstream_failure_falls_back(llm_server: QAServer, fake: FakeUpstream, mode: str):
    fake.mode = mode
    client = client_for(llm_server)
    started = time.monotonic()
    reply = ask(client, QUESTION)
    assert time.monotonic() - started < 7, "the timeout (2 s) was not applied"
    data = reply.model_dump()
    text = reply.choices[0].message.content
    assert text.startswith(FALLBACK_NOTE["zh"]) and "根据文档" in text and "来源：" in text
    assert data["answer_mode"] == "fallback" and data["citations"]
    assert data["citations"][0]["evidence"]["text"] in text
    assert len(fake.requests) == 1  # no retries

    english = ask(client, "How many graduate students does the Shanghai Innovation Institute have?")
    assert english.choices[0].message.content.startswith(FALLBACK_NOTE["en"])

    started = time.monotonic()
    payloads = raw_stream(llm_server, {"model": "qa", "messages": [{"role": "user", "content": QUESTION}]})
    assert time.monotonic() - started < 7
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert streamed.startswith(FALLBACK_NOTE["zh"]) and "根据文档" in streamed
    assert chunks[-1]["citations"] and chunks[-1]["answer_mode"] == "fallback"


def test_unanswerable_question_never_reaches_the_upstream(upstream: FakeUpstream, tmp_path: Path):
    """With nothing answerable (threshold above 1) the service refuses without calling the model."""
    from qa.settings import Settings
    from qa.wiring import build_services, ingest_seeds_if_empty

    upstream.requests.clear()
    upstream.mode = "ok"
    settings = Settings(data_dir=tmp_path / "data", seeds_dir=SEEDS_DIR, embedder="use-m",
                        answerable_threshold=1.01, llm_base_url=upstream.base_url, llm_model="fake-model")
    services = build_services(settings)
    try:
        ingest_seeds_if_empty(services)
        answer = services.chat.answer([{"role": "user", "content": QUESTION}])
        assert (answer.mode, answer.text, answer.citations) == ("refusal", REFUSAL["zh"], [])
        events = list(services.chat.stream([{"role": "user", "content": "Where is the institute?"}]))
        assert events[0] == REFUSAL["en"] and events[-1].mode == "refusal"
        assert upstream.requests == []
    finally:
        services.close()
