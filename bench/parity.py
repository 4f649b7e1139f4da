"""``qa bench --parity``: retrieval over real document files against the same passages as plain text.

The shared evaluation passages (XQuAD zh/en, CMRC 2018 dev; ``../shared/eval``) are laid out as Word
documents with python-docx: one document per XQuAD article and language (its title as the ``Title``
paragraph and the document title, its paragraphs below), and CMRC passages eight to a document, each
under a ``Heading 1`` with its title. Every page has a running header (benchmark and document title)
and a footer ``Page N of M``; every third document switches to two columns halfway (a continuous
section break), so a PDF page there holds one-column and two-column text. LibreOffice (headless,
Debian ``libreoffice-writer-nogui``) converts them to PDF, fonts embedded; the PDF pages rendered at
200 dpi, grey, make a multi-page TIFF per document: the scan.

Five corpora per benchmark are built through the real ingestion: the documents as plain text (the
same titles, headings and paragraphs handed over directly: the baseline), and the DOCX, PDF and
scanned files through their parsers (:meth:`DocumentService.ingest_paths`, OCR included). Each stored
passage stands for the source passage it overlaps most (character trigrams), and the questions of
``qa eval`` are asked of each corpus: R@1 per direction beside the plain-text figure (targets: DOCX
and PDF at most 0.01 below it, the scans at most 0.03; a figure above it is no miss). For the PDF and
the scans, the ``page`` and ``page_end`` of every passage are checked against the pages where its
own first and last characters are in the PDF's text layer read by PDFium alone, both for every
stored passage and for the gold passages cited first (target: all of them). Passages whose extracted text is identical to the original hit the embedding cache
that ``qa eval`` fills.

Files are made once in ``<cache_dir>/parity/<layout>/``; corpora are kept per model (and version of
the ingestion code) beside the ``qa eval`` pools, so a rerun only asks the questions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.evaluation import Question, Run, _progress, eval_embedder, evaluate_run, load_runs, pools_dir
from qa.settings import Settings
from qa.store.base import DEFAULT_COLLECTION

LAYOUT = "v1"  # bump when the documents made here change
CMRC_PER_DOCUMENT = 8
SCAN_DPI = 200
DIRECTIONS = ("xquad zh→zh", "xquad en→en", "xquad en→zh", "xquad zh→en", "cmrc2018 zh→zh")
VARIANTS = ("plain", "docx", "pdf", "scan")
TARGETS = {"docx": 0.01, "pdf": 0.01, "scan": 0.03}
INSTALL_HINT = ("LibreOffice is needed to make the PDFs: run `make bench-tools` (or, as root: "
                "apt-get install -y --no-install-recommends libreoffice-writer-nogui)")


class ToolMissingError(RuntimeError):
    pass


@dataclass(frozen=True)
class Item:
    heading: str | None
    passage_id: str
    text: str


@dataclass
class DocSpec:
    """One document to make: its file name (and document id), benchmark, title and passages in order."""

    name: str
    benchmark: str
    lang: str
    title: str
    two_columns: bool
    items: list[Item] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def layouts(eval_dir: Path, limit: int | None = None) -> list[DocSpec]:
    """The documents: XQuAD articles (each language its own document) and CMRC passages eight to a
    document; ``limit``: only the first N articles and the first N CMRC documents."""
    specs: list[DocSpec] = []
    xquad = _read_jsonl(eval_dir / "xquad" / "passages.jsonl")
    articles = list(dict.fromkeys(p["title"] for p in xquad))[:limit]
    for k, title in enumerate(articles):
        for lang in ("zh", "en"):
            specs.append(DocSpec(f"xquad-{lang}-{k:03d}", "xquad", lang, title, k % 3 == 2,
                                 [Item(None, p["id"], p["text"].strip()) for p in xquad
                                  if p["title"] == title and p["lang"] == lang]))
    cmrc = _read_jsonl(eval_dir / "cmrc2018" / "passages.jsonl")
    chunks = [cmrc[i:i + CMRC_PER_DOCUMENT] for i in range(0, len(cmrc), CMRC_PER_DOCUMENT)][:limit]
    for k, chunk in enumerate(chunks):
        specs.append(DocSpec(f"cmrc-{k:03d}", "cmrc2018", "zh", f"CMRC 2018 dev {k + 1}", k % 3 == 2,
                             [Item(p.get("title") or None, p["id"], p["text"].strip()) for p in chunk]))
    return specs


# --- making the files ------------------------------------------------------------------------------
def _page_field(paragraph, instruction: str) -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    fld = OxmlElement("w:fldSimple")
    fld.set(qn("w:instr"), instruction)
    run, text = OxmlElement("w:r"), OxmlElement("w:t")
    text.text = "1"
    run.append(text)
    fld.append(run)
    paragraph._p.append(fld)


def _columns(section, count: int) -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    sect = section._sectPr
    cols = sect.find(qn("w:cols"))
    if cols is None:
        cols = OxmlElement("w:cols")
        sect.append(cols)
    cols.set(qn("w:num"), str(count))
    cols.set(qn("w:space"), "425")


def write_docx(spec: DocSpec, path: Path) -> None:
    import docx
    from docx.enum.section import WD_SECTION

    document = docx.Document()
    document.core_properties.title = spec.title
    document.core_properties.author = "qa parity benchmark"
    section = document.sections[0]
    label = {"xquad": f"XQuAD ({spec.lang})", "cmrc2018": "CMRC 2018 dev"}[spec.benchmark]
    section.header.paragraphs[0].text = f"{label} · {spec.title}"
    footer = section.footer.paragraphs[0]
    footer.add_run("Page ")
    _page_field(footer, "PAGE")
    footer.add_run(" of ")
    _page_field(footer, "NUMPAGES")
    document.add_paragraph(spec.title, style="Title")
    switch = len(spec.items) // 2 if spec.two_columns else -1
    for k, item in enumerate(spec.items):
        if k == switch:
            _columns(document.add_section(WD_SECTION.CONTINUOUS), 2)
        if item.heading:
            document.add_paragraph(item.heading, style="Heading 1")
        document.add_paragraph(item.text)
    document.save(path)


def soffice() -> str:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if not found:
        raise ToolMissingError(INSTALL_HINT)
    return found


def convert_to_pdf(paths: list[Path], out_dir: Path, batch: int = 40) -> None:
    """DOCX → PDF with LibreOffice headless (a private profile; checked: the Writer-only install exits 0
    even when it cannot load a file)."""
    program = soffice()
    with tempfile.TemporaryDirectory(prefix="qa-soffice-") as profile:
        for i in range(0, len(paths), batch):
            chunk = paths[i:i + batch]
            done = subprocess.run([program, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to",
                                   "pdf", "--outdir", str(out_dir), *map(str, chunk)],
                                  capture_output=True, text=True, timeout=600)
            missing = [p.name for p in chunk if not (out_dir / (p.stem + ".pdf")).is_file()]
            if missing:
                raise RuntimeError(f"LibreOffice made no PDF of {', '.join(missing[:5])}: "
                                   f"{(done.stdout + done.stderr)[-1000:]}")


def write_scan(pdf_path: Path, path: Path, dpi: int = SCAN_DPI) -> None:
    """Every page of the PDF rendered at ``dpi`` in grey, as one multi-page TIFF (a scan without text)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(pdf_path)
    try:
        images = [page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for page in pdf]
    finally:
        pdf.close()
    images[0].save(path, save_all=True, append_images=images[1:], compression="tiff_deflate", dpi=(dpi, dpi))


def make_files(specs: list[DocSpec], folder: Path, console: Console, scans: bool = True) -> dict[str, dict[str, Path]]:
    """The DOCX, PDF and scan of every spec under ``folder`` (made once; atomically, file by file)."""
    paths = {v: {s.name: folder / v / f"{s.name}.{ext}" for s in specs}
             for v, ext in (("docx", "docx"), ("pdf", "pdf"), ("scan", "tif"))}
    for v in paths:
        (folder / v).mkdir(parents=True, exist_ok=True)
    for spec in specs:
        target = paths["docx"][spec.name]
        if not target.exists():
            write_docx(spec, target.with_suffix(".part.docx"))
            target.with_suffix(".part.docx").rename(target)
    todo = [paths["docx"][s.name] for s in specs if not paths["pdf"][s.name].exists()]
    if todo:
        with console.status(f"LibreOffice: {len(todo)} documents to PDF…"):
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                convert_to_pdf(todo, Path(tmp))
                for p in todo:
                    os.replace(Path(tmp) / (p.stem + ".pdf"), paths["pdf"][p.stem])
    if scans:
        with _progress(console) as progress:
            task = progress.add_task("rendering scans", total=len(specs))
            for spec in specs:
                target = paths["scan"][spec.name]
                if not target.exists():
                    write_scan(paths["pdf"][spec.name], target.with_suffix(".part.tif"))
                    target.with_suffix(".part.tif").rename(target)
                progress.advance(task)
    return paths


# --- corpora ---------------------------------------------------------------------------------------
def as_plain(spec: DocSpec):
    """The document as the parsers should see it, handed over directly: title, headings, paragraphs."""
    from qa.ingest.formats.office import Blocks

    blocks = Blocks()
    blocks.add("title", spec.title)
    for item in spec.items:
        if item.heading:
            blocks.add("heading", item.heading)
        blocks.add("paragraph", item.text)
    return blocks.finish("text", None, spec.title, None, {})


def _ingest_version() -> str:
    """A digest of the ingestion code (parsers, chunker): corpora made by other code are made again."""
    import hashlib

    import qa.ingest

    digest = hashlib.sha256()
    for path in sorted(Path(qa.ingest.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def build_corpus(variant: str, benchmark: str, specs: list[DocSpec], files: dict[str, dict[str, Path]],
                 settings: Settings, embedder, scope: str, console: Console):
    """The corpus of ``benchmark`` as ``variant`` (plain text, or the files through their parsers), kept in
    a folder named after the layout, the scope and the ingestion code (``scope`` ends with its digest)."""
    from qa.cli import _folder_progress
    from qa.wiring import build_services

    data_dir = pools_dir(settings, embedder) / f"parity-{LAYOUT}-{variant}-{benchmark}-{scope}"
    services = build_services(settings.model_copy(update={"data_dir": data_dir, "seeds_dir": None}), embedder)
    mine = [s for s in specs if s.benchmark == benchmark]
    if services.corpus.store.count_documents() >= len(mine):
        return services
    with _progress(console) as progress:
        if variant == "plain":
            task = progress.add_task(f"{benchmark} as plain text: passages embedded", total=None)
            services.documents.add_many([(as_plain(s), s.name) for s in mine],
                                        on_progress=lambda done, total: progress.update(task, completed=done,
                                                                                         total=total))
        else:
            progress.console.print(f"{benchmark} {variant}: ingesting {len(mine)} files")
            report = services.documents.ingest_paths([files[variant][s.name] for s in mine], DEFAULT_COLLECTION,
                                                     _folder_progress(progress))
            for skipped in report.skipped:
                progress.console.print(f"[red]skipped[/red] {skipped.path}: {skipped.reason}")
    return services


# --- which passage is which, and on which page -----------------------------------------------------
def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def _trigrams(text: str) -> set[str]:
    n = _norm(text)
    return {n[i:i + 3] for i in range(max(1, len(n) - 2))}


@dataclass
class Mapped:
    passage_id: str | None  # the source passage it stands for (None: a header or stray text)
    page: int | None
    page_end: int | None
    start: int
    end: int
    document_id: str
    text: str


def map_passages(services, specs: list[DocSpec]) -> dict[int, Mapped]:
    """Every stored passage with the source passage it overlaps most (at least half its trigrams)."""
    store = services.corpus.store
    by_name = {s.name: s for s in specs}
    grams = {it.passage_id: _trigrams(it.text) for s in specs for it in s.items}
    rowids = [e.rowid for batch in store.iter_entries(DEFAULT_COLLECTION) for e in batch]
    out: dict[int, Mapped] = {}
    for rowid, p in store.passages_by_rowid(rowids).items():
        spec = by_name.get(p.document_id)
        own = _trigrams(p.text)
        best, score = None, 0.0
        for item in spec.items if spec else []:
            s = len(own & grams[item.passage_id]) / max(1, len(own))
            if s > score:
                best, score = item.passage_id, s
        out[rowid] = Mapped(best if score >= 0.5 else None, p.page, p.page_end, p.start, p.end, p.document_id, p.text)
    return out


def identical_passages(services, specs: list[DocSpec], mapped: dict[int, Mapped]) -> int:
    """How many source passages were extracted exactly: the stored text their pieces span is the original
    (as Word keeps it: runs of spaces as one)."""
    from qa.ingest.formats.office import clean

    spans: dict[tuple[str, str], tuple[int, int]] = {}
    for m in mapped.values():
        if m.passage_id is not None:
            a, b = spans.get((m.document_id, m.passage_id), (m.start, m.end))
            spans[(m.document_id, m.passage_id)] = (min(a, m.start), max(b, m.end))
    texts = {s.name: services.corpus.store.get_document(DEFAULT_COLLECTION, s.name) for s in specs}
    source = {it.passage_id: " ".join(clean(it.text).split()) for s in specs for it in s.items}
    return sum(1 for (doc, pid), (a, b) in spans.items()
               if texts.get(doc) and " ".join(texts[doc][1][a:b].split()) == source[pid])


def pdf_texts(pdf_path: Path) -> list[str]:
    """PDFium's raw text of each page of the PDF (not through qa's parser), normalised (NFKC, no spaces)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(pdf_path)
    try:
        return [_norm(page.get_textpage().get_text_range()) for page in pdf]
    finally:
        pdf.close()


def true_pages(pages: list[str], spec: DocSpec) -> dict[str, tuple[int, int]]:
    """Where each passage of ``spec`` starts and ends in the PDF whose page texts are ``pages``: the pages
    holding its first and its last characters."""
    joined, starts = "", []
    for text in pages:
        starts.append(len(joined))
        joined += text

    def page_at(offset: int) -> int:
        return max(k for k, s in enumerate(starts) if s <= offset) + 1

    found: dict[str, tuple[int, int]] = {}
    cursor = 0
    for item in spec.items:
        n = _norm(item.text)
        first = last = None
        for size in (16, 8, 4):  # a window cut by a page break (and the header between) is not found whole
            at = joined.find(n[:size], cursor)
            if at >= 0:
                first = page_at(at)
                break
        for size in (16, 8, 4):
            at = joined.find(n[-size:], cursor)
            if at >= 0:
                last = page_at(at + size - 1)
                cursor = at + size
                break
        if first is not None and last is not None:
            found[item.passage_id] = (first, last)
    return found


def _page_of(trigrams: list[str], pages: list[str], candidates: list[int]) -> int | None:
    """The page (of ``candidates``) holding the first of ``trigrams`` that one candidate page alone holds
    (read errors and trigrams on several pages are passed over)."""
    for gram in trigrams:
        holding = [k for k in candidates if gram in pages[k - 1]]
        if len(holding) == 1:
            return holding[0]
    return None


def page_checks(mapped: dict[int, Mapped], truth: dict[str, tuple[int, int]], pages: list[str]) -> dict[int, bool]:
    """Per stored passage standing for a source passage: whether its ``page`` and ``page_end`` are the
    pages where its own first and last characters are in the PDF (found among the source passage's pages
    and the one before and after, through the first and the last trigram of its text that one page alone
    holds: OCR errors are passed over)."""
    ok: dict[int, bool] = {}
    for rowid, m in mapped.items():
        if m.passage_id is None or m.passage_id not in truth:
            continue
        first, last = truth[m.passage_id]
        candidates = [k for k in range(first - 1, last + 2) if 1 <= k <= len(pages)]
        n = _norm(m.text)
        grams = [n[i:i + 3] for i in range(max(1, len(n) - 2))]
        start, end = _page_of(grams, pages, candidates), _page_of(grams[::-1], pages, candidates)
        ok[rowid] = m.page is not None and (m.page, m.page_end or m.page) == (start, end)
    return ok


# --- the run ---------------------------------------------------------------------------------------
def _runs(eval_dir: Path, specs: list[DocSpec], limit_questions: int | None) -> dict[str, Run]:
    in_scope = {it.passage_id for s in specs for it in s.items}
    runs = {}
    for benchmark in ("xquad", "cmrc2018"):
        _, found = load_runs(benchmark, eval_dir)
        for run in found:
            if run.name in DIRECTIONS:
                questions = [Question(q.id, q.text, q.lang, q.gold & in_scope, q.answers) for q in run.questions
                             if q.gold & in_scope]
                run.questions = questions[:limit_questions]
                run.pool = benchmark
                runs[run.name] = run
    return runs


def run(settings: Settings, eval_dir: Path, *, limit: int | None = None, questions: int | None = None,
        ocr: bool = True, console: Console | None = None, output: Path | None = None) -> dict:
    console = console or Console()
    soffice()  # before anything: the exact install command when it is missing
    started = time.monotonic()
    specs = layouts(eval_dir, limit)
    scope = ("all" if limit is None else f"first{limit}") + "-" + _ingest_version()  # read once, at the start
    folder = settings.cache_dir / "parity" / LAYOUT
    files = make_files(specs, folder, console, scans=ocr)
    embedder = eval_embedder(settings)
    variants = [v for v in VARIANTS if ocr or v != "scan"]
    runs = _runs(eval_dir, specs, questions)
    figures: dict[str, dict] = {name: {"n": len(r.questions)} for name, r in runs.items()}
    pages: dict[str, dict] = {}
    identical: dict[str, dict] = {}
    for variant in variants:
        cited = [0, 0]
        checked = [0, 0]
        same = [0, 0]
        for benchmark in ("xquad", "cmrc2018"):
            mine = [s for s in specs if s.benchmark == benchmark]
            services = build_corpus(variant, benchmark, specs, files, settings, embedder, scope, console)
            try:
                mapped = map_passages(services, mine)
                rowid_doc = {r: m.passage_id for r, m in mapped.items() if m.passage_id is not None}
                sources = {it.passage_id for s in mine for it in s.items}
                same[0] += identical_passages(services, mine, mapped)
                same[1] += len(sources)
                ok: dict[int, bool] = {}
                if variant in ("pdf", "scan"):
                    for spec in mine:
                        texts = pdf_texts(files["pdf"][spec.name])
                        ok.update(page_checks({r: m for r, m in mapped.items() if m.document_id == spec.name},
                                              true_pages(texts, spec), texts))
                    checked[0] += sum(ok.values())
                    checked[1] += len(ok)
                for name, r in runs.items():
                    if r.pool != benchmark or not r.questions:
                        continue
                    tops: list = []
                    fig = evaluate_run(r, services, console, baseline=False, rowid_doc=rowid_doc, tops=tops)
                    figures[name][variant] = fig.legs["final"]["R@1"]
                    for q, top in tops:
                        if top is not None and rowid_doc.get(top) in q.gold and variant in ("pdf", "scan"):
                            cited[1] += 1
                            cited[0] += ok.get(top, False)
            finally:
                services.close()
        identical[variant] = {"identical": same[0], "passages": same[1]}
        if variant in ("pdf", "scan"):
            pages[variant] = {"cited_gold_correct": cited[0], "cited_gold": cited[1],
                              "passages_correct": checked[0], "passages_checked": checked[1]}
    result = {"layout": LAYOUT, "scope": scope, "model": embedder.model_id, "documents": len(specs),
              "pages": _pdf_pages(files["pdf"].values()), "r_at_1": figures, "pages_cited": pages,
              "identical_text": identical, "seconds": round(time.monotonic() - started, 1),
              "load_average": os.getloadavg()[0]}
    print_result(result, variants, console)
    if output:
        output.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return result


def _pdf_pages(paths: Iterable[Path]) -> int:
    import pypdfium2 as pdfium

    total = 0
    for path in paths:
        pdf = pdfium.PdfDocument(path)
        total += len(pdf)
        pdf.close()
    return total


def print_result(result: dict, variants: list[str], console: Console) -> None:
    table = Table(title=f"parity: R@1 of the same passages as plain text and as files ({result['documents']} documents, "
                        f"{result['pages']} PDF pages, {result['model']})")
    table.add_column("direction")
    table.add_column("questions")
    for v in variants:
        table.add_column({"plain": "plain text", "docx": "DOCX (Δ)", "pdf": "PDF (Δ)", "scan": "scan, OCR (Δ)"}[v])
    for name, fig in result["r_at_1"].items():
        cells = []
        for v in variants:
            value = fig.get(v)
            if value is None:
                cells.append("—")
            elif v == "plain":
                cells.append(f"{value:.3f}")
            else:
                delta = value - fig["plain"]
                mark = "" if delta >= -TARGETS[v] - 1e-9 else " ✗"  # more than the target below plain text
                cells.append(f"{value:.3f} ({delta:+.3f}){mark}")
        table.add_row(name, str(fig["n"]), *cells)
    console.print(table)
    for v, p in result["pages_cited"].items():
        console.print(f"{v}: page right for {p['cited_gold_correct']}/{p['cited_gold']} gold passages cited first, "
                      f"and for {p['passages_correct']}/{p['passages_checked']} stored passages")
    for v, s in result["identical_text"].items():
        console.print(f"{v}: {s['identical']}/{s['passages']} passages extracted with the original text exactly")
    console.print(f"{result['seconds']:.0f} s; load average {result['load_average']:.1f} on {os.cpu_count()} CPUs")


__all__ = ["run", "layouts", "write_docx", "convert_to_pdf", "write_scan", "map_passages", "true_pages",
           "page_checks", "ToolMissingError", "INSTALL_HINT"]
