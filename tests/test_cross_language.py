"""The dictionary leg through the real HTTP server (USE-m): /healthz says whether the dictionary is loaded,
``explain`` shows the leg as its own component, awkward cross-language questions get valid results,
and a dictionary that cannot be read is reported at start while the service still answers."""

from __future__ import annotations

import uuid

import pytest

from conftest import CitationChecker, QAServer, running_server

ENGLISH_DOC = (
    "Harbour ferries\n\n"
    "The harbour ferry leaves the east pier every morning at six. The ferry company employs forty sailors "
    "and its chairman said that the fleet will be renewed next year.\n\n"
    "The weather in the harbour is usually calm in spring, but autumn storms close the pier for a few days."
)


def test_healthz_names_the_dictionary(fast_server: QAServer):
    body = fast_server.health().json()
    assert body["dictionary"].startswith("CC-CEDICT, "), body
    assert int(body["dictionary"].split()[1]) > 100_000


def test_explain_shows_the_dictionary_leg(fast_server: QAServer, citations_fast: CitationChecker):
    resp = fast_server.client.post("/v1/search", json={
        "query": "What did the district party secretary say about artificial intelligence?", "top_k": 5,
        "explain": True})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    citations_fast(result)
    chinese = [r for r in result["results"] if r["lang"] == "zh"]
    assert chinese
    # Every Chinese seed paragraph shares some translated word with this question (区, 书记, 人工智能, …).
    assert any(r["explain"].get("dictionary", 0) > 0 for r in chinese), result["results"]
    for r in result["results"]:
        assert 0 <= r["explain"].get("dictionary", 0) <= 1


CROSS_QUERIES = [
    ("a name in pinyin only", "Cao Liqiang", None),
    ("a name in characters only", "曹立强", None),
    ("both languages in one question", "徐汇区 party secretary 说了什么？", None),
    ("Traditional Chinese on an English corpus", "渡輪公司的董事長說了什麼？", "en"),
    ("English on an English corpus", "What did the ferry company's chairman say?", "en"),
]


@pytest.mark.parametrize(("query", "lang"), [(q, lang) for _, q, lang in CROSS_QUERIES],
                         ids=[name for name, _, _ in CROSS_QUERIES])
def test_cross_language_questions_get_valid_results(fast_server: QAServer, citations_fast: CitationChecker,
                                                    query, lang):
    doc_id = f"ferries-{uuid.uuid4().hex[:8]}"
    added = fast_server.client.post("/v1/documents", json={"title": "Harbour ferries", "text": ENGLISH_DOC,
                                                            "id": doc_id})
    assert added.status_code == 201, added.text
    try:
        body = {"query": query, "top_k": 3, "explain": True}
        if lang:
            body.update(lang=lang, document_ids=[doc_id])
        resp = fast_server.client.post("/v1/search", json=body)
        assert resp.status_code == 200, resp.text
        result = resp.json()
        citations_fast(result)
        assert result["results"], result
        assert isinstance(result["answerable"], bool) and 0 <= result["confidence"] <= 1
        if lang:
            assert {r["lang"] for r in result["results"]} == {lang}
    finally:
        citations_fast.forget(doc_id)
        fast_server.client.delete(f"/v1/documents/{doc_id}")


def test_the_chinese_question_finds_the_english_paragraph_by_translation(fast_server: QAServer):
    doc_id = f"ferries-{uuid.uuid4().hex[:8]}"
    assert fast_server.client.post("/v1/documents", json={"title": "Harbour ferries", "text": ENGLISH_DOC,
                                                          "id": doc_id}).status_code == 201
    try:
        resp = fast_server.client.post("/v1/search", json={
            "query": "渡轮公司的董事长说了什么？", "top_k": 2, "explain": True, "document_ids": [doc_id]})
        assert resp.status_code == 200, resp.text
        first = resp.json()["results"][0]
        assert "chairman said" in first["text"]
        assert first["explain"]["dictionary"] > 0  # 渡轮 → ferry, 公司 → company, 董事长 → chairman, 说 → said
    finally:
        fast_server.client.delete(f"/v1/documents/{doc_id}")


@pytest.fixture(scope="module")
def server_without_dictionary(tmp_path_factory: pytest.TempPathFactory):
    missing = tmp_path_factory.mktemp("no-dictionary") / "cedict_missing.txt.gz"
    yield from running_server("no-dictionary", tmp_path_factory, QA_EMBEDDER="use-m",
                              QA_DICTIONARY_PATH=str(missing))


def test_a_dictionary_that_fails_to_load_is_reported_and_the_service_still_answers(server_without_dictionary):
    health = server_without_dictionary.health()
    assert health.status_code == 200
    body = health.json()
    assert body["ready"] is True
    assert body["dictionary"].startswith("unavailable:") and "cedict_missing.txt.gz" in body["dictionary"], body
    assert "dictionary leg disabled" in server_without_dictionary.log_text()
    resp = server_without_dictionary.client.post("/v1/search", json={
        "query": "What did the Xuhui district party secretary say?", "top_k": 3, "explain": True})
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert results and all("dictionary" not in (r["explain"] or {}) for r in results)
