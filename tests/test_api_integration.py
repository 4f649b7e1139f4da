"""The service end to end over real HTTP.

Quality (``slow``): the real EmbeddingGemma server answers Chinese and English questions about the
seed report with the paragraph that holds the answer first, and declines questions the report does
not cover. Each target paragraph is named by a phrase that occurs once in the report; the test finds
where that phrase sits in the stored document text and requires the top passage's span to contain it,
so no passage id, rank or score is written into the tests.

Behaviour (USE-m server): the document lifecycle (add, find, replace, unchanged, duplicate, upload,
delete), /healthz, concurrent uploads, and the ``qa ask`` command line.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from qa.ingest.parsers import SUPPORTED_EXTENSIONS as SUPPORTED_SUFFIXES
from qa.ingest.service import document_id_for
from qa.store.base import DEFAULT_COLLECTION
from qa.store.sqlite import SqlitePassageStore

from conftest import SEEDS_DIR, CitationChecker, QAServer, assert_error_response

# (question, a phrase that occurs exactly once in the report, inside the paragraph that answers it)
ZH_QUESTIONS = [
    ("上海创智学院有多少研究生和导师？", "190余名研究生和70多位导师"),
    ("杨浦正在打造什么创新区？", "杨“数”浦新质秀带创新区"),
    ("闵行区要把大零号湾建设成什么？", "世界级“科创湾区”"),
    ("黄浦区构建的“1+N+1”产业体系以什么为核心？", "以金融科技为核心"),
    ("青浦区以什么为标杆打造创新生态“强磁场”？", "以“模速空间”为标杆"),
    ("松江区要发挥哪条科创走廊的策源地作用？", "长三角G60科创走廊策源地"),
    ("徐汇区的人工智能三年行动计划有多少个标志性项目？", "30个标志性项目"),
    ("张江科学城要打造哪三大产业高地？", "集成电路、生物医药、人工智能三大产业高地"),
    ("崇明区依托哪些海洋科研平台？", "长兴海洋实验室"),
    ("復旦大學佈局了幾個新工科創新學院？", "六大新工科创新学院"),  # Traditional characters
]

EN_QUESTIONS = [
    ("How many graduate students and supervisors does the Shanghai Innovation Institute have?",
     "190余名研究生和70多位导师"),
    ("What innovation zone is Yangpu District building, according to its Party secretary Xue Kan?",
     "杨“数”浦新质秀带创新区"),
    ("What does Minhang District plan for the Greater Neo Bay (Da Ling Hao Wan) innovation zone?",
     "世界级“科创湾区”"),
    ("What is Huangpu District's \"1+N+1\" industrial system centred on?", "以金融科技为核心"),
    ("What role does the G60 Science and Technology Innovation Corridor play for Songjiang?",
     "长三角G60科创走廊策源地"),
    ("How many landmark projects are in Xuhui's three-year action plan for artificial intelligence?",
     "30个标志性项目"),
    ("Which three industry highlands will Zhangjiang Science City build?", "集成电路、生物医药、人工智能三大产业高地"),
    ("What did the president of Shanghai Jiao Tong University, Ding Kuiling, say about artificial intelligence?",
     "中国科学院院士丁奎岭"),
    ("Which United Nations industrial AI centre of excellence was set up in Shanghai last year?",
     "全球工业人工智能联盟卓越中心"),
    ("What will Jinshan District focus on, such as new energy vehicles and the low-altitude economy?",
     "新能源汽车、高端化工和新材料"),
    ("What did the Xuhui district party secretary say?", "徐汇区委书记曹立强表示"),  # README's example: a name in pinyin
]

OUT_OF_CORPUS = [
    "How do I bake sourdough bread?",
    "巴黎奥运会的金牌榜第一是哪个国家？",
    "What is the capital of Australia?",
    "红烧肉怎么做？",
    "Who won the 2022 FIFA World Cup?",
    "如何治疗感冒？",
    "How many metro lines does Shanghai have?",  # Shanghai, but not in the report
    "上海今天天气怎么样？",
]

# Same topic, another place or person: the hardest negatives (the report is about Shanghai only).
NEAR_MISSES = [
    # Known limitation: a question on the report's own topic about a place it never names; the
    # calibrated confidence can still reach the threshold for these (seen 0.5-0.8). They stay here,
    # able to fail, so that an improvement shows.
    pytest.param("深圳南山区委书记对人工智能发展有什么表态？", marks=pytest.mark.xfail(strict=False, reason="known limitation")),
    pytest.param("北京的人工智能政策是什么？", marks=pytest.mark.xfail(strict=False, reason="known limitation")),
    pytest.param("What did the mayor of Beijing say about artificial intelligence?",
                 marks=pytest.mark.xfail(strict=False, reason="known limitation")),
]


def _ids(params: list[tuple[str, str]]) -> list[str]:
    return [q[:40] for q, _ in params]


@dataclass
class SeedReport:
    id: str
    text: str
    meta: dict

    def span_of(self, phrase: str) -> tuple[int, int]:
        """Where the phrase sits in the document; it must occur exactly once to name one paragraph."""
        count = self.text.count(phrase)
        assert count == 1, f"{phrase!r} occurs {count} times in the report: pick a phrase unique to one paragraph"
        start = self.text.index(phrase)
        return start, start + len(phrase)


def _seed_report(server: QAServer) -> SeedReport:
    """The seed document holding every target phrase, found through the API."""
    docs = server.client.get("/v1/documents").json()["documents"]
    phrases = [p for _, p in ZH_QUESTIONS + EN_QUESTIONS]
    for doc in docs:
        body = server.client.get(f"/v1/documents/{doc['id']}").json()
        if all(p in body["text"] for p in phrases):
            return SeedReport(doc["id"], body["text"], body)
    pytest.fail(f"no stored document holds all the target phrases; documents: {[d['id'] for d in docs]}")


@pytest.fixture(scope="module")
def seed_report(gemma_server: QAServer) -> SeedReport:
    return _seed_report(gemma_server)


def _search(server: QAServer, query: str, **extra) -> dict:
    resp = server.client.post("/v1/search", json={"query": query, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _describe(result: dict) -> str:
    lines = [f"confidence={result['confidence']} answerable={result['answerable']}"]
    for r in result["results"]:
        lines.append(f"  [{r['rank']}] {r['score']:.4f} {r['passage_id']} [{r['start']}:{r['end']}] {r['text'][:40]}")
    return "\n".join(lines)


# --- quality with the real model ------------------------------------------------------------------
@pytest.mark.slow
def test_seeds_are_ingested_on_first_start(gemma_server: QAServer):
    health = gemma_server.health().json()
    assert health["ready"] is True and health["status"] == "ready"
    assert health["model"].startswith("embeddinggemma-300m@"), health
    listing = gemma_server.client.get("/v1/documents").json()
    seed_files = [p for p in SEEDS_DIR.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]
    assert seed_files, "the checkout has no seed documents"
    assert {d["id"] for d in listing["documents"]} == {document_id_for(p.stem) for p in seed_files}
    assert listing["total"] == len(seed_files) == health["documents"]
    assert health["passages"] == sum(d["passages"] for d in listing["documents"]) > 0
    for path in seed_files:
        doc = gemma_server.client.get(f"/v1/documents/{document_id_for(path.stem)}").json()
        first_line = next(line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip())
        assert doc["title"] == first_line
        assert doc["lang"] == "zh"


@pytest.mark.slow
@pytest.mark.parametrize(("question", "phrase"), ZH_QUESTIONS, ids=_ids(ZH_QUESTIONS))
def test_chinese_question_finds_its_paragraph_first(gemma_server, seed_report, citations_gemma, question, phrase):
    start, end = seed_report.span_of(phrase)
    result = _search(gemma_server, question, top_k=5)
    citations_gemma(result)
    assert result["query_lang"] == "zh"
    top = result["results"][0]
    assert top["document_id"] == seed_report.id
    assert top["start"] <= start and end <= top["end"], f"{phrase!r} is not in the top passage:\n{_describe(result)}"
    assert phrase in top["text"]
    assert result["answerable"] is True, _describe(result)


@pytest.mark.slow
@pytest.mark.parametrize(("question", "phrase"), EN_QUESTIONS, ids=_ids(EN_QUESTIONS))
def test_english_question_finds_its_chinese_paragraph_first(gemma_server, seed_report, citations_gemma,
                                                             question, phrase):
    start, end = seed_report.span_of(phrase)
    result = _search(gemma_server, question, top_k=5)
    citations_gemma(result)
    assert result["query_lang"] == "en"
    top = result["results"][0]
    assert top["start"] <= start and end <= top["end"], f"{phrase!r} is not in the top passage:\n{_describe(result)}"
    assert result["answerable"] is True, _describe(result)


@pytest.mark.slow
@pytest.mark.parametrize("question", OUT_OF_CORPUS)
def test_question_the_report_does_not_cover_is_not_answerable(gemma_server, citations_gemma, question):
    result = _search(gemma_server, question, top_k=3)
    citations_gemma(result)  # passages may still come back; they must still be cited exactly
    assert result["answerable"] is False, _describe(result)
    threshold = gemma_server.client.get("/healthz").json()["answerable_threshold"]
    assert result["confidence"] < threshold, _describe(result)


@pytest.mark.slow
@pytest.mark.parametrize("question", NEAR_MISSES)
def test_question_about_another_place_is_not_answerable(gemma_server, citations_gemma, question):
    result = _search(gemma_server, question, top_k=3)
    citations_gemma(result)
    assert result["answerable"] is False, _describe(result)


@pytest.mark.slow
def test_in_corpus_questions_are_more_confident_than_out_of_corpus_ones(gemma_server):
    """The confidence separates the two sets: the least sure answerable question beats every other one."""
    inside = [_search(gemma_server, q, top_k=1)["confidence"] for q, _ in ZH_QUESTIONS + EN_QUESTIONS]
    outside = [_search(gemma_server, q, top_k=1)["confidence"] for q in OUT_OF_CORPUS]
    assert min(inside) > max(outside), f"in corpus: {sorted(inside)}; out of corpus: {sorted(outside)}"


@pytest.mark.slow
def test_title_and_metadata_lines_are_not_passages(gemma_server, seed_report, citations_gemma):
    """The source/published line fills the document's fields and is never returned as a passage."""
    assert seed_report.meta["source"] and seed_report.meta["published"], seed_report.meta
    meta_lines = [m for m in re.finditer(r"[^\n]+", seed_report.text)
                  if seed_report.meta["source"] in m.group() and ":" in m.group()]
    assert len(meta_lines) == 1, [m.group() for m in meta_lines]
    meta = meta_lines[0]
    assert re.sub(r"\D", "", seed_report.meta["published"]) in re.sub(r"\D", "", meta.group())
    title = seed_report.text.index(seed_report.meta["title"])

    # Every passage of the report, asked for with the question whose answer is the metadata.
    count = seed_report.meta["passages"]
    result = _search(gemma_server, "这篇报道是哪家媒体什么时候发布的？", top_k=50, document_ids=[seed_report.id])
    citations_gemma(result)
    assert len(result["results"]) == count
    for r in result["results"]:
        assert r["end"] <= meta.start() or r["start"] >= meta.end(), f"{r['passage_id']} overlaps the metadata line"
        assert not (r["start"] <= title < r["end"]), f"{r['passage_id']} holds the title line"
        assert (r["source"], r["published"]) == (seed_report.meta["source"], seed_report.meta["published"])
    english = _search(gemma_server, "Which newspaper published this report and when?", top_k=3)
    citations_gemma(english)
    assert all(meta.group() not in r["text"] for r in english["results"])


@pytest.mark.slow
def test_language_filter(gemma_server, citations_gemma):
    result = _search(gemma_server, "上海创智学院有多少研究生？", top_k=5, lang="zh")
    citations_gemma(result)
    assert result["results"] and all(r["lang"] == "zh" for r in result["results"])
    assert all(r["lang"] == "en" for r in _search(gemma_server, "上海创智学院", lang="en")["results"])


# --- behaviour with the light model ---------------------------------------------------------------
LIGHTHOUSE = (
    "The Keeper of Skerry Light\n\n"
    "Every evening at dusk the keeper of Skerry Light trims the wick and winds the clockwork that turns the lens.\n\n"
    "In the winter of 1887 a storm tore the lantern glass out of its frame, and the keeper kept a paraffin "
    "lamp burning in the gallery for eleven nights until the supply boat returned.\n\n"
    "The light was automated in 1962 and the keeper's cottage is now a museum of Orkney shipwrecks."
)
LIGHTHOUSE_CHANGED = LIGHTHOUSE.replace(
    "In the winter of 1887 a storm tore the lantern glass out of its frame, and the keeper kept a paraffin "
    "lamp burning in the gallery for eleven nights until the supply boat returned.",
    "Bees from the keeper's hives produce heather honey that is sold at the Kirkwall market every summer.",
)


def _post_json(server: QAServer, **doc) -> dict:
    resp = server.client.post("/v1/documents", json=doc)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _all_passages(server: QAServer, document_id: str) -> list[dict]:
    """Every passage of a document, through search restricted to it."""
    result = _search(server, "keeper", top_k=50, document_ids=[document_id])
    return result["results"]


def test_json_document_lifecycle(fast_server: QAServer, citations_fast: CitationChecker):
    doc_id = f"skerry-{uuid.uuid4().hex[:8]}"
    health_before = fast_server.health().json()

    # add
    added = _post_json(fast_server, id=doc_id, title="Skerry Light", text=LIGHTHOUSE, source="Harbour Gazette",
                       published="2024-03-01")
    assert added["status"] == "added" and added["passages"] >= 3, added
    doc = fast_server.client.get(f"/v1/documents/{doc_id}").json()
    assert doc["text"] == LIGHTHOUSE and doc["lang"] == "en" and doc["passages"] == added["passages"]
    assert (doc["source"], doc["published"]) == ("Harbour Gazette", "2024-03-01")
    health = fast_server.health().json()
    assert health["passages"] == health_before["passages"] + added["passages"]
    assert health["documents"] == health_before["documents"] + 1

    # found by a question
    result = _search(fast_server, "How long did the keeper keep a lamp burning after the storm of 1887?")
    citations_fast(result)
    top = result["results"][0]
    assert top["document_id"] == doc_id and "eleven nights" in top["text"], _describe(result)
    storm_passage = top["passage_id"]
    assert fast_server.client.get(f"/v1/passages/{storm_passage}").json()["text"] == top["text"]

    # re-POST identical → unchanged
    same = _post_json(fast_server, id=doc_id, title="Skerry Light", text=LIGHTHOUSE, source="Harbour Gazette",
                      published="2024-03-01")
    assert same == {"document_id": doc_id, "status": "unchanged", "passages": added["passages"], "duplicate_of": None}

    # same content under another id → duplicate, nothing stored
    other_id = doc_id + "-copy"
    dup = fast_server.client.post("/v1/documents", json={"id": other_id, "title": "Skerry Light", "text": LIGHTHOUSE})
    assert assert_error_response(dup, 409)["duplicate_of"] == doc_id
    assert_error_response(fast_server.client.get(f"/v1/documents/{other_id}"), 404)

    # changed text → replaced; the old paragraph is gone everywhere
    replaced = _post_json(fast_server, id=doc_id, title="Skerry Light", text=LIGHTHOUSE_CHANGED)
    assert replaced["status"] == "replaced", replaced
    citations_fast.forget(doc_id)
    assert fast_server.client.get(f"/v1/documents/{doc_id}").json()["text"] == LIGHTHOUSE_CHANGED
    passages = _all_passages(fast_server, doc_id)
    assert len(passages) == replaced["passages"]
    assert not any("eleven nights" in p["text"] for p in passages)
    stored = fast_server.client.get(f"/v1/passages/{storm_passage}")
    assert stored.status_code == 404 or "eleven nights" not in stored.json()["text"]
    after = _search(fast_server, "How long did the keeper keep a lamp burning after the storm of 1887?", top_k=50)
    citations_fast(after)
    assert not any("eleven nights" in r["text"] for r in after["results"])
    honey = _search(fast_server, "Where is the heather honey from the keeper's bees sold?")
    citations_fast(honey)
    assert honey["results"][0]["document_id"] == doc_id and "Kirkwall" in honey["results"][0]["text"]

    # delete → gone from the listing, the passages endpoint and search
    ids = [p["passage_id"] for p in passages]
    resp = fast_server.client.delete(f"/v1/documents/{doc_id}")
    assert resp.status_code == 200 and resp.json() == {"deleted": doc_id, "collection": "default"}
    assert_error_response(fast_server.client.get(f"/v1/documents/{doc_id}"), 404)
    for pid in ids:
        assert_error_response(fast_server.client.get(f"/v1/passages/{pid}"), 404)
    gone = _search(fast_server, "Where is the heather honey from the keeper's bees sold?", top_k=50)
    assert all(r["document_id"] != doc_id for r in gone["results"])
    assert _search(fast_server, "keeper", document_ids=[doc_id])["results"] == []
    assert_error_response(fast_server.client.delete(f"/v1/documents/{doc_id}"), 404)
    assert fast_server.health().json()["passages"] == health_before["passages"]


def test_document_without_id_gets_a_content_id(fast_server: QAServer):
    text = f"Tidal clocks\n\nA tidal clock has one hand that turns once every 12 hours and 25 minutes. {uuid.uuid4()}"
    first = _post_json(fast_server, title="Tidal clocks", text=text)
    assert first["status"] == "added" and first["document_id"].startswith("doc-")
    again = _post_json(fast_server, title="Tidal clocks", text=text)
    assert again["status"] == "unchanged" and again["document_id"] == first["document_id"]
    assert fast_server.client.delete(f"/v1/documents/{first['document_id']}").status_code == 200


MARKDOWN = """---
title: Beekeeping notes
source: Apiary Monthly
date: 2023-06-14
---

# Beekeeping notes

## Swarming

A colony preparing to swarm raises new queen cells along the lower edge of the comb.

## Winter

Bees survive the winter by forming a tight cluster and shivering their flight muscles to keep warm.
"""

HTML = """<!doctype html><html><head><title>Glass harmonica</title>
<meta name="date" content="2022-02-02"><script>var x = "not text";</script></head>
<body><nav>Home | About</nav><h1>Glass harmonica</h1>
<p>Benjamin Franklin invented the glass armonica in 1761, nesting glass bowls on a spindle turned by a treadle.</p>
<p>Players touch the rims of the <b>spinning</b> bowls with wet fingers to make the sound.</p></body></html>
"""


@pytest.mark.parametrize(("filename", "content", "question", "answer", "section"), [
    ("bees-{}.md", MARKDOWN, "How do bees survive the winter?", "tight cluster", "Winter"),
    ("harmonica-{}.html", HTML, "Who invented the glass armonica and when?", "Benjamin Franklin", None),
])
def test_file_upload(fast_server: QAServer, citations_fast: CitationChecker, filename, content, question, answer,
                     section):
    name = filename.format(uuid.uuid4().hex[:8])
    resp = fast_server.client.post("/v1/documents", files={"file": (name, content.encode(), "application/octet-stream")})
    assert resp.status_code == 201, resp.text
    out = resp.json()
    doc_id = name.rsplit(".", 1)[0]
    assert out["document_id"] == doc_id and out["status"] == "added" and out["passages"] >= 2
    doc = fast_server.client.get(f"/v1/documents/{doc_id}").json()
    try:
        if name.endswith(".html"):
            assert "not text" not in doc["text"] and "Home | About" not in doc["text"]
            assert "spinning bowls" in doc["text"]  # inline markup dropped, the words kept
            assert doc["title"] == "Glass harmonica" and doc["published"] == "2022-02-02"
        else:
            assert doc["text"] == content  # offsets refer to the raw markdown
            assert (doc["title"], doc["source"], doc["published"]) == ("Beekeeping notes", "Apiary Monthly",
                                                                       "2023-06-14")
        result = _search(fast_server, question)
        citations_fast(result)
        top = result["results"][0]
        assert top["document_id"] == doc_id and answer in top["text"], _describe(result)
        if section:
            assert top["section"] == section
        # the same bytes again: unchanged
        again = fast_server.client.post("/v1/documents", files={"file": (name, content.encode(), "text/plain")})
        assert again.status_code == 201 and again.json()["status"] == "unchanged"
    finally:
        fast_server.client.delete(f"/v1/documents/{doc_id}")


def test_upload_with_explicit_id_and_title(fast_server: QAServer):
    doc_id = f"notes-{uuid.uuid4().hex[:8]}"
    resp = fast_server.client.post(
        "/v1/documents", data={"id": doc_id, "title": "Kite flying"},
        files={"file": ("whatever.txt", "Kites fly best in a steady wind of 8 to 25 miles per hour.".encode(), "text/plain")},
    )
    assert resp.status_code == 201, resp.text
    doc = fast_server.client.get(f"/v1/documents/{doc_id}").json()
    assert doc["title"] == "Kite flying" and doc["passages"] == 1
    assert fast_server.client.delete(f"/v1/documents/{doc_id}").status_code == 200


def test_concurrent_uploads_of_the_same_content(fast_server: QAServer):
    """Four clients upload one text under four ids at once: one is added, the others are duplicates of it."""
    tag = uuid.uuid4().hex[:8]
    text = "\n\n".join(f"Paragraph {i} of the {tag} almanac: the tide tables of the northern harbour." for i in range(12))

    def post(i: int):
        return fast_server.client.post("/v1/documents", json={"id": f"almanac-{tag}-{i}", "title": "Almanac", "text": text})

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(post, range(4)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409], [r.text for r in responses]
    added = [r.json() for r in responses if r.status_code == 201]
    assert added[0]["status"] == "added", added
    assert all(assert_error_response(r, 409)["duplicate_of"] == added[0]["document_id"]
               for r in responses if r.status_code == 409)
    listing = fast_server.client.get("/v1/documents", params={"limit": 1000}).json()["documents"]
    assert [d["id"] for d in listing if d["id"].startswith(f"almanac-{tag}")] == [added[0]["document_id"]]
    assert fast_server.client.delete(f"/v1/documents/{added[0]['document_id']}").status_code == 200


# --- the light model answers the seed suite too --------------------------------------------------
@pytest.fixture(scope="module")
def seed_report_fast(fast_server: QAServer) -> SeedReport:
    return _seed_report(fast_server)


LIGHT_MODEL_MISSES = {
    # Known limitation of USE-m (with or without the dictionary leg): only the pinyin of "Xuhui" singles the
    # paragraph out, and USE-m's vectors do not bring it into the candidates; a heading holding 总书记 wins.
    "What did the Xuhui district party secretary say?",
}
LIGHT_MODEL_SEED_QUESTIONS = [
    pytest.param(q, p, id=q[:40], marks=pytest.mark.xfail(strict=False, reason="known limitation of the light model"))
    if q in LIGHT_MODEL_MISSES else pytest.param(q, p, id=q[:40])
    for q, p in ZH_QUESTIONS + EN_QUESTIONS
]


@pytest.mark.parametrize(("question", "phrase"), LIGHT_MODEL_SEED_QUESTIONS)
def test_light_model_answers_the_seed_questions(fast_server, seed_report_fast, citations_fast, question, phrase):
    """Every offered model has its own calibration (tests/test_calibration.py): the light one too answers
    every seed question, with the paragraph that holds the answer among the first three."""
    start, end = seed_report_fast.span_of(phrase)
    result = _search(fast_server, question, top_k=3)
    citations_fast(result)
    assert any(r["start"] <= start and end <= r["end"] for r in result["results"]), _describe(result)
    assert result["answerable"] is True, _describe(result)


def test_healthz_reports_model_and_counts(fast_server: QAServer):
    resp = fast_server.health()
    assert resp.status_code == 200
    body = resp.json()
    assert body["ready"] is True and body["model"] == "use-m-v3" and body["error"] is None
    listing = fast_server.client.get("/v1/documents", params={"limit": 1000}).json()
    assert body["documents"] == listing["total"]
    assert body["passages"] == sum(d["passages"] for d in listing["documents"])
    # Where the start-up went: the loading of the model overlaps the imports, so the parts after the imports
    # (waiting for the model, services, seeds, warm-up) add up to the rest of the total.
    took = body["startup_s"]
    assert set(took) == {"imports", "model", "services", "seeds", "warm_up", "total"}, took
    after_imports = took["model"] + took["services"] + took["seeds"] + took["warm_up"]
    assert all(v >= 0 for v in took.values()) and took["imports"] + after_imports <= took["total"] + 0.1, took


def test_cli_ask_prints_a_citation(qa_cli, tmp_path):
    """``qa ask`` on a fresh data folder ingests the seeds and prints passages with their exact spans."""
    data = tmp_path / "data"
    proc = qa_cli.run("ask", "上海创智学院有多少研究生和导师？", "--data-dir", data, timeout=300, QA_EMBEDDER="use-m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"confidence \d\.\d\d", out), out

    store = SqlitePassageStore(data / "store.sqlite")
    try:
        (doc,) = store.list_documents(DEFAULT_COLLECTION)
        _, text = store.get_document(DEFAULT_COLLECTION, doc.id)
        cited = re.findall(r"(\S+:\d+(?:\.\d+)?) \[(\d+):(\d+)\]", out)
        assert 1 <= len(cited) <= 3, out
        for passage_id, start, end in cited:
            passage = store.passage(DEFAULT_COLLECTION, passage_id)
            assert passage is not None, f"{passage_id} printed but not stored"
            assert (passage.start, passage.end) == (int(start), int(end))
            assert text[passage.start:passage.end] == passage.text
        target = text.index("190余名研究生")
        assert any(int(s) <= target < int(e) for _, s, e in cited), out
    finally:
        store.close()


def test_upload_with_a_chinese_file_name(fast_server: QAServer, citations_fast: CitationChecker):
    """A Chinese file name gives an ASCII id (not an error), stable across uploads and distinct per name."""
    tag = uuid.uuid4().hex[:6]
    body = f"浦江渡轮\n\n浦江渡轮每天早上六点从东昌路码头开出,编号{tag}。\n".encode()
    first = fast_server.client.post("/v1/documents", files={"file": (f"渡轮时刻表{tag}.txt", body, "text/plain")})
    assert first.status_code == 201, first.text
    doc_id = first.json()["document_id"]
    try:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", doc_id) and tag in doc_id, doc_id
        again = fast_server.client.post("/v1/documents", files={"file": (f"渡轮时刻表{tag}.txt", body, "text/plain")})
        assert again.json() == {**first.json(), "status": "unchanged"}
        other = fast_server.client.post("/v1/documents", files={"file": (f"轮渡时刻表{tag}.txt", body + b"x", "text/plain")})
        assert other.status_code == 201 and other.json()["document_id"] != doc_id
        fast_server.client.delete(f"/v1/documents/{other.json()['document_id']}")
        result = _search(fast_server, "浦江渡轮几点从东昌路码头开出？", document_ids=[doc_id])
        citations_fast(result)
        assert result["results"] and "六点" in result["results"][0]["text"]
    finally:
        fast_server.client.delete(f"/v1/documents/{doc_id}")


def test_batch_of_documents_is_checked_first_then_written_in_order(fast_server: QAServer, citations_fast: CitationChecker):
    tag = uuid.uuid4().hex[:8]
    docs = [
        {"id": f"batch-light-{tag}", "title": "Skerry Light", "text": LIGHTHOUSE.replace("Skerry", f"Skerry {tag}")},
        {"id": f"batch-orchard-{tag}", "title": "果园",
         "text": f"果园{tag}种植了十二个苹果品种，其中包括一种古老的赤褐色品种。\n\n每年秋天，果农在集市上出售苹果酒。"},
        {"id": f"batch-again-{tag}", "title": "Skerry Light", "text": LIGHTHOUSE.replace("Skerry", f"Skerry {tag}")},
    ]
    before = fast_server.health().json()

    # one bad document: nothing is written
    bad = fast_server.client.post("/v1/documents/batch", json={"documents": docs[:2] + [{"title": "t", "text": " "}]})
    assert_error_response(bad, 422)
    assert "documents.2.text" in bad.json()["error"]["message"]
    assert fast_server.health().json()["documents"] == before["documents"]
    for body in ({"documents": []}, {"docs": docs}, [docs[0]], {"documents": [docs[0]] * 257}):
        assert_error_response(fast_server.client.post("/v1/documents/batch", json=body), 422)

    resp = fast_server.client.post("/v1/documents/batch", json={"documents": docs})
    assert resp.status_code == 201, resp.text
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["added", "added", "duplicate"], results
    assert results[2]["duplicate_of"] == docs[0]["id"]
    assert fast_server.health().json()["documents"] == before["documents"] + 2
    for doc, result in zip(docs[:2], results):
        stored = fast_server.client.get(f"/v1/documents/{doc['id']}").json()
        assert stored["text"] == doc["text"] and stored["passages"] == result["passages"]
    result = _search(fast_server, f"果园{tag}种植了多少个苹果品种？", document_ids=[docs[1]["id"]])
    citations_fast(result)
    assert result["results"][0]["document_id"] == docs[1]["id"]
    again = fast_server.client.post("/v1/documents/batch", json={"documents": docs[:2]}).json()["results"]
    assert [r["status"] for r in again] == ["unchanged", "unchanged"]
    for doc in docs[:2]:
        assert fast_server.client.delete(f"/v1/documents/{doc['id']}").status_code == 200


def test_collections_are_separate_knowledge_bases_over_http(fast_server: QAServer, citations_fast: CitationChecker):
    """Create, fill, search, chat, list and delete a collection; bad names and unknown collections are 4xx."""
    client = fast_server.client
    name = f"kb-{uuid.uuid4().hex[:6]}"
    for bad in ["", "x" * 200, "../x", "has space", "UPPER"]:
        error = assert_error_response(client.post("/v1/collections", json={"name": bad}), 422)
        assert "lower-case letters" in error["message"], error
    created = client.post("/v1/collections", json={"name": name, "description": "Lighthouses"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name and created.json()["documents"] == 0
    assert_error_response(client.post("/v1/collections", json={"name": name}), 409)

    unknown = client.post("/v1/search", json={"query": "lamp", "collection": "nowhere"})
    error = assert_error_response(unknown, 404)
    assert "default" in error["collections"] and name in error["collections"], error
    assert_error_response(client.post("/v1/documents", params={"collection": "nowhere"},
                                      json={"title": "x", "text": "y"}), 404)
    assert_error_response(client.get("/v1/documents", params={"collection": "Bad Name"}), (404, 422))

    # an empty collection answers, with nothing to cite
    empty = _search(fast_server, "Who kept the lamp burning?", collection=name)
    assert (empty["answerable"], empty["results"]) == (False, [])

    # the same id in two collections: two documents
    for collection, keeper in ((name, "Agnes"), (DEFAULT_COLLECTION, "Tormod")):
        resp = client.post("/v1/documents", params={"collection": collection}, json={
            "id": "skerry", "title": "Skerry Light",
            "text": f"The keeper {keeper} kept the lamp burning for eleven nights after the storm of 1887."})
        assert resp.status_code == 201 and resp.json()["status"] == "added", resp.text
    ours = _search(fast_server, "Who kept the lamp burning after the storm?", collection=name)
    citations_fast(ours)
    assert {r["collection"] for r in ours["results"]} == {name}
    assert "Agnes" in ours["results"][0]["text"]
    doc = client.get("/v1/documents/skerry", params={"collection": name}).json()
    assert doc["collection"] == name and "Agnes" in doc["text"]
    listing = client.get("/v1/documents", params={"collection": name}).json()
    assert listing["total"] == 1 and [d["id"] for d in listing["documents"]] == ["skerry"]
    passage_id = ours["results"][0]["passage_id"]
    assert "Agnes" in client.get(f"/v1/passages/{passage_id}", params={"collection": name}).json()["text"]
    listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
    assert listed[name]["documents"] == 1 and listed[name]["passages"] >= 1

    # chat frontends choose the knowledge base as a model
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "qa" in models and f"qa/{name}" in models
    chat = client.post("/v1/chat/completions", json={
        "model": f"qa/{name}", "messages": [{"role": "user", "content": "Who kept the lamp burning after the storm?"}]})
    assert chat.status_code == 200, chat.text
    assert all(c["collection"] == name for c in chat.json()["citations"])
    assert chat.json()["citations"] and "Agnes" in chat.json()["citations"][0]["text"]
    missing = client.post("/v1/chat/completions", json={"model": "qa/nowhere", "messages": [
        {"role": "user", "content": "lamp?"}]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found", missing.text

    # deleting the collection removes its documents and index entries, not the default's
    assert client.delete(f"/v1/collections/{name}").json() == {"deleted": name}
    assert_error_response(client.get(f"/v1/collections/{name}"), 404)
    assert_error_response(client.post("/v1/search", json={"query": "lamp", "collection": name}), 404)
    still = _search(fast_server, "Who kept the lamp burning after the storm?", top_k=3)
    citations_fast(still)
    assert any("Tormod" in r["text"] for r in still["results"])
    assert all("Agnes" not in r["text"] for r in still["results"])
    assert client.delete("/v1/documents/skerry").status_code == 200
