"""The web page at /, driven in a real Chromium (Debian's /usr/bin/chromium through Playwright).

Ask a Chinese question, see the answer stream in with the right citation, open the cited passage
with the evidence highlighted in place; and a document full of HTML shows as text, never as markup.
A screenshot of the first goes to test-artifacts/web.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, QAServer, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000


def test_static_files_are_served(fast_server: QAServer):
    page = fast_server.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/web/app.js"></script>' in page.text and "cdn" not in page.text.lower()
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = fast_server.client.get("/web/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text  # document text only ever goes in as text
    assert fast_server.client.get("/web/style.css").headers["content-type"].startswith("text/css")
    assert fast_server.client.get("/web/secrets.txt").status_code == 404
    assert fast_server.client.get("/web/..%2Fsettings.py").status_code == 404


@pytest.fixture
def browser_page(tmp_path: Path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium fonts-wqy-microhei)")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900}, locale="zh-CN",
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.dialogs = []  # any alert() would mean document text ran as script
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        try:
            yield page
        finally:
            context.close()


def ask_in_page(page, base_url: str, question: str):
    page.goto(f"{base_url}/")
    page.wait_for_selector("#status.ok")
    page.fill("#question", question)
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as request:
        page.press("#question", "Enter")
    body = request.value.post_data_json
    assert body["stream"] is True and body["messages"][-1]["content"] == question
    turn = page.locator(".turn").last
    turn.locator(".citation").first.wait_for()
    page.wait_for_selector(".turn .answer:not(.streaming)")
    return turn


@pytest.mark.slow
@pytest.mark.browser
def test_chinese_question_citation_and_highlighted_evidence(gemma_server: QAServer, browser_page):
    page = browser_page
    turn = ask_in_page(page, gemma_server.base_url, "上海创智学院有多少研究生？")
    answer = turn.locator(".answer").inner_text()
    assert answer.startswith("根据文档") and "190余名研究生" in answer
    assert "来源" not in answer  # the page shows the structured citations instead of the text block
    assert turn.locator(".answer .marker").first.inner_text() == "[1]"
    assert "有答案" in turn.locator(".meta").inner_text()

    first = turn.locator(".citation").first
    assert "190余名研究生" in first.locator(".evidence").inner_text()
    passage_id = first.get_attribute("data-passage-id")
    passage = httpx.get(f"{gemma_server.base_url}/v1/passages/{passage_id}").json()
    assert f"第{passage['paragraph']}段" in first.locator(".where").inner_text()

    first.locator("button").click()
    mark = page.locator("#panel-text mark.evidence")
    mark.wait_for()
    assert page.locator("#panel-text").inner_text() == passage["text"]
    assert "190余名研究生" in mark.inner_text()
    # the highlight sits exactly where the evidence is inside the passage
    before = page.evaluate("() => document.querySelector('#panel-text').firstChild.textContent")
    assert passage["text"][len(before):len(before) + len(mark.inner_text())] == mark.inner_text()
    assert page.locator("#panel-title").inner_text() == passage["title"]
    assert page.locator(".citation.active").count() == 1

    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web.png"), full_page=True)

    # a follow-up in the same conversation is sent with the history
    page.fill("#question", "导师呢？")
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as request:
        page.press("#question", "Enter")
    assert len(request.value.post_data_json["messages"]) == 3
    page.locator(".turn").nth(1).locator(".citation").first.wait_for()
    assert "70多位导师" in page.locator(".turn").nth(1).locator(".citation").first.inner_text()
    assert page.dialogs == [] and page.errors == []


@pytest.fixture(scope="module")
def xss_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAServer]:
    """A USE-m server of this module's own (it gets a hostile document), every question answerable."""
    yield from running_server("web-xss", tmp_path_factory, QA_EMBEDDER="use-m", QA_ANSWERABLE_THRESHOLD="0")


HOSTILE_TITLE = "<img src=x onerror=alert(2)>Banana notes"
HOSTILE = "<script>alert(1)</script><b>x</b>"


@pytest.mark.browser
def test_html_in_documents_renders_as_text(xss_server: QAServer, browser_page):
    resp = xss_server.client.post("/v1/documents", json={
        "title": HOSTILE_TITLE, "id": "bananas",
        "text": f"Banana farming\n\nBananas are yellow fruit grown in bunches. "
                f"The farm note says {HOSTILE} about bananas.\n\nPlantains are cooked before eating.",
    })
    assert resp.status_code == 201, resp.text
    page = browser_page
    turn = ask_in_page(page, xss_server.base_url, "What does the farm note say about bananas?")
    first = turn.locator(".citation").first
    assert first.get_attribute("data-passage-id").startswith("bananas:")
    assert HOSTILE in first.locator(".evidence").inner_text()
    assert HOSTILE_TITLE in first.locator(".where").inner_text()
    assert HOSTILE in turn.locator(".answer").inner_text()
    first.locator("button").click()
    page.locator("#panel-text mark.evidence").wait_for()
    assert HOSTILE in page.locator("#panel-text mark.evidence").inner_text()
    assert page.locator("#panel-title").inner_text() == HOSTILE_TITLE
    # nothing from the document became an element
    assert page.locator("#log b, #log img, #log script, #panel b, #panel img, #panel script").count() == 0
    page.wait_for_timeout(300)
    assert page.dialogs == [] and page.errors == []
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-html-as-text.png"), full_page=True)


@pytest.fixture(scope="module")
def pdf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAServer]:
    """A USE-m server of this module's own with a three-page PDF uploaded, every question answerable."""
    yield from running_server("web-pdf", tmp_path_factory, QA_EMBEDDER="use-m", QA_ANSWERABLE_THRESHOLD="0")


@pytest.mark.browser
def test_pdf_citation_shows_the_page_with_the_evidence_highlighted(pdf_server: QAServer, browser_page,
                                                                   tmp_path_factory: pytest.TempPathFactory):
    import docgen
    from conftest import artifacts_dir

    resp = pdf_server.client.post("/v1/documents", files={"file": ("water.pdf", docgen.report_pdf(), "application/pdf")})
    assert resp.status_code == 201, resp.text
    page = browser_page
    turn = ask_in_page(page, pdf_server.base_url, "How much did the pressure at the tap rise in the eastern district?")
    first = turn.locator(".citation").first
    assert first.get_attribute("data-passage-id").startswith("water:")
    first.locator("button").click()
    page.locator("#panel-pages figure.page").first.wait_for()
    figure = page.locator("#panel-pages figure.page").first
    assert figure.get_attribute("data-page") == "1"
    assert page.locator("#panel-meta").inner_text().startswith("p. 1 · 1 Introduction")
    page.wait_for_function("() => { const i = document.querySelector('#panel-pages img'); "
                           "return i && i.complete && i.naturalWidth > 0; }")
    frame = figure.locator(".page-frame").bounding_box()
    highlights = figure.locator(".highlight")
    assert highlights.count() >= 1
    for k in range(highlights.count()):
        box = highlights.nth(k).bounding_box()
        # on the page, in its right column (the evidence is from the right column of page 1)
        assert frame["x"] + frame["width"] / 2 < box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
        assert frame["y"] < box["y"] < frame["y"] + frame["height"] / 2 and box["height"] > 2
    # the highlighted area of the rendered page holds the evidence: compare with the kept layout's text
    evidence = first.locator(".evidence").inner_text()
    assert "pressure" in evidence
    out = artifacts_dir(tmp_path_factory)
    page.screenshot(path=str(out / "web-pdf-page.png"), full_page=True)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-pdf-page.png"), full_page=True)
    assert page.dialogs == [] and page.errors == []


@pytest.mark.browser
def test_collection_picker_asks_the_chosen_knowledge_base(xss_server: QAServer, browser_page):
    """The picker lists the collections; a question then goes to model qa/<collection> and its citations
    (and the passage panel) come from that collection."""
    client = xss_server.client
    assert client.post("/v1/collections", json={"name": "orchards"}).status_code == 201
    resp = client.post("/v1/documents", params={"collection": "orchards"}, json={
        "title": "Orchard log", "id": "log",
        "text": "Orchard log\n\nThe russet apples were picked on the ninth of October.\n\nPears ripen later."})
    assert resp.status_code == 201, resp.text
    page = browser_page
    page.goto(f"{xss_server.base_url}/")
    page.wait_for_selector("#status.ok")
    page.wait_for_function("() => [...document.querySelectorAll('#collection option')].some(o => o.value === 'orchards')")
    page.select_option("#collection", "orchards")
    page.fill("#question", "When were the russet apples picked?")
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as request:
        page.press("#question", "Enter")
    assert request.value.post_data_json["model"] == "qa/orchards"
    turn = page.locator(".turn").last
    turn.locator(".citation").first.wait_for()
    first = turn.locator(".citation").first
    assert first.get_attribute("data-passage-id").startswith("log:")
    first.locator("button").click()
    page.locator("#panel-text mark.evidence").wait_for()
    assert "russet apples" in page.locator("#panel-text").inner_text()
    assert page.errors == []
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "web-collection-picker.png"), full_page=True)
