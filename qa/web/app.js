// qa web page: ask a question, the answer streams in from /v1/chat/completions (SSE),
// numbered citations below it; a click shows the passage with its evidence highlighted. Where the
// service needs an API key, the page asks for one and sends it with every request.
// Every piece of document text is inserted with textContent / text nodes, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const log = $("log"), form = $("ask"), input = $("question"), send = $("send");
  const panel = $("panel"), panelTitle = $("panel-title"), panelMeta = $("panel-meta"), panelText = $("panel-text");
  const panelPages = $("panel-pages");
  let history = [];  // earlier turns, sent along so follow-up questions can be resolved
  let busy = false;
  const picker = $("collection");
  // The knowledge base questions go to: chat model "qa" (default) or "qa/<name>"; kept for this tab.
  let collection = sessionStorage.getItem("qa.collection") || "default";
  const chatModel = () => (collection === "default" ? "qa" : `qa/${collection}`);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  const isZh = (text) => /[\u3400-\u9fff]/.test(text);

  // ---- the API key ------------------------------------------------------------------------------
  // Asked once when the service answers 401 (it needs keys once one exists), kept for this tab in
  // sessionStorage and sent as "Authorization: Bearer <key>" with every request.
  let apiKey = sessionStorage.getItem("qa.key") || "";
  let keyWanted = null;  // the pending question for a key: one form, however many requests wait
  const withKey = (headers) => Object.assign({}, headers || {}, apiKey ? { "Authorization": `Bearer ${apiKey}` } : {});

  function askForKey(message) {
    if (!keyWanted) {
      const keyForm = $("key-form"), keyInput = $("key-input");
      $("key-error").textContent = message || "";
      keyForm.hidden = false;
      keyInput.value = "";
      keyInput.focus();
      keyWanted = new Promise((resolve) => {
        keyForm.addEventListener("submit", (event) => {
          event.preventDefault();
          apiKey = keyInput.value.trim();
          sessionStorage.setItem("qa.key", apiKey);
          keyForm.hidden = true;
          keyWanted = null;
          resolve();
        }, { once: true });
      });
    }
    return keyWanted;
  }

  // The service's answer to a request made with the key; a 401 asks for a (new) key and tries again.
  async function api(url, options = {}) {
    for (;;) {
      const res = await fetch(url, Object.assign({}, options, { headers: withKey(options.headers) }));
      if (res.status !== 401) return res;
      let why = "";
      try { const b = await res.json(); why = (b.error && b.error.message) || ""; } catch (e) { /* not JSON */ }
      await askForKey(apiKey ? `密钥无效 The key was refused: ${why}` : "");
    }
  }

  // An image behind the key: fetched with it and shown from a blob URL.
  async function showImage(img, url) {
    try {
      const res = await api(url);
      if (res.ok) img.src = URL.createObjectURL(await res.blob());
    } catch (e) { /* the page is shown without it */ }
  }

  // ---- service status -------------------------------------------------------------------
  async function refreshStatus() {
    const status = $("status");
    try {
      const res = await fetch("/healthz", { headers: withKey() });
      const body = await res.json();
      if (body.ready) {
        // the counts are told to keys that see every collection (or where no key is needed)
        status.textContent = body.documents === null ? "就绪 ready"
          : `就绪 ready · ${body.documents} 篇文档 docs · ${body.passages} 段 passages`;
        status.className = "status ok";
        loadCollections();
        return;
      }
      status.textContent = body.error ? `启动失败 failed: ${body.error}` : `加载中 loading (${body.status})…`;
      status.className = body.error ? "status bad" : "status";
    } catch (e) {
      status.textContent = "无法连接 offline";
      status.className = "status bad";
    }
    setTimeout(refreshStatus, 2000);
  }

  // ---- the knowledge-base picker -----------------------------------------------------------------
  async function loadCollections() {
    let names = ["default"];
    try {
      const res = await api("/v1/collections");
      if (res.ok) names = (await res.json()).collections.map((c) => c.name);
    } catch (e) { /* keep the default */ }
    // the one chosen before, else default, else the first this key sees
    if (!names.includes(collection)) collection = names.includes("default") || !names.length ? "default" : names[0];
    picker.textContent = "";
    for (const name of names) {
      const option = el("option", null, name);
      option.value = name;
      option.selected = name === collection;
      picker.appendChild(option);
    }
  }

  picker.addEventListener("change", () => {
    collection = picker.value;
    sessionStorage.setItem("qa.collection", collection);
    history = [];  // a new knowledge base starts a new conversation
  });

  // ---- one question → one turn in the log ------------------------------------------------
  function newTurn(question) {
    const empty = $("empty");
    if (empty) empty.remove();
    const turn = el("article", "turn");
    turn.appendChild(el("div", "question", question));
    const answer = el("div", "answer streaming");
    const meta = el("div", "meta");
    const sources = el("ol", "citations");
    turn.append(answer, meta, sources);
    log.appendChild(turn);
    turn.scrollIntoView({ block: "end" });
    return { turn, answer, meta, sources };
  }

  // Replace the answer's plain text by text nodes and clickable [n] markers.
  function renderMarkers(answerNode, text, citations) {
    const byIndex = new Map(citations.map((c) => [c.index, c]));
    answerNode.textContent = "";
    const re = /\[(\d+)\]/g;
    let last = 0, m;
    while ((m = re.exec(text)) !== null) {
      answerNode.appendChild(document.createTextNode(text.slice(last, m.index)));
      const c = byIndex.get(Number(m[1]));
      if (c) {
        const b = el("button", "marker", m[0]);
        b.type = "button";
        b.title = c.title || c.passage_id;
        b.addEventListener("click", () => showPassage(c));
        answerNode.appendChild(b);
      } else {
        answerNode.appendChild(document.createTextNode(m[0]));
      }
      last = re.lastIndex;
    }
    answerNode.appendChild(document.createTextNode(text.slice(last)));
  }

  function where(c, zh) {
    const parts = [c.title, c.section, zh ? `第${c.paragraph}段` : `paragraph ${c.paragraph}`];
    return parts.filter(Boolean).join(" · ");
  }

  function renderCitations(view, final, zh) {
    const { answer, meta, sources } = view;
    const pct = Math.round((final.confidence || 0) * 100);
    meta.textContent = "";
    const badge = el("span", final.answerable ? "badge yes" : "badge no",
      final.answerable ? (zh ? "有答案" : "answered") : (zh ? "文档未涉及" : "not in the documents"));
    meta.append(badge, el("span", "confidence", `${zh ? "置信度" : "confidence"} ${pct}%`));
    sources.textContent = "";
    for (const c of final.citations || []) {
      const li = el("li", "citation");
      li.dataset.passageId = c.passage_id;
      const b = el("button", "cite");
      b.type = "button";
      b.append(el("span", "num", `[${c.index}]`), el("span", "where", where(c, zh)));
      b.appendChild(el("span", "evidence", c.evidence.text));
      b.addEventListener("click", () => showPassage(c));
      li.appendChild(b);
      sources.appendChild(li);
    }
    renderMarkers(answer, answer.textContent, final.citations || []);
  }

  // ---- the passage panel ------------------------------------------------------------------
  async function showPassage(c) {
    panel.hidden = false;
    panelTitle.textContent = c.title || c.document_id;
    panelMeta.textContent = "…";
    panelText.textContent = "";
    panelPages.textContent = "";
    document.querySelectorAll(".citation.active").forEach((n) => n.classList.remove("active"));
    document.querySelectorAll(`.citation`).forEach((n) => {
      if (n.dataset.passageId === c.passage_id) n.classList.add("active");
    });
    let p;
    try {
      const res = await api(`/v1/passages/${encodeURIComponent(c.passage_id)}?collection=${encodeURIComponent(c.collection || collection)}`);
      p = await res.json();
      if (!res.ok) throw new Error((p.error && p.error.message) || res.statusText);
    } catch (e) {
      panelMeta.textContent = `无法读取原文 could not load the passage: ${e.message}`;
      return;
    }
    const page = p.page ? (p.page_end ? `p. ${p.page}–${p.page_end}` : `p. ${p.page}`) : null;
    panelMeta.textContent = [page, p.section, `¶${p.paragraph}`, `${p.passage_id}`, `[${p.start}:${p.end}]`,
      p.published, p.source].filter(Boolean).join(" · ");
    // Evidence offsets are document offsets, like the passage's: make them relative to the passage.
    const text = p.text;
    const s = Math.max(0, Math.min(text.length, c.evidence.start - p.start));
    const e = Math.max(s, Math.min(text.length, c.evidence.end - p.start));
    const mark = el("mark", "evidence", text.slice(s, e));
    panelText.append(document.createTextNode(text.slice(0, s)), mark, document.createTextNode(text.slice(e)));
    mark.scrollIntoView({ block: "nearest" });
    showPages(p, c.evidence, c.collection || collection);
  }

  // ---- the page view: a PDF or scan page with the evidence highlighted on it ----------------------
  async function showPages(p, evidence, kb) {
    const inKb = `collection=${encodeURIComponent(kb)}`;
    panelPages.textContent = "";
    let boxes = [];
    try {
      const res = await api(`/v1/documents/${encodeURIComponent(p.document_id)}/boxes?start=${evidence.start}&end=${evidence.end}&${inKb}`);
      if (res.ok) boxes = await res.json();
    } catch (e) { return; }
    if (!boxes.length) return;  // not a paged document, or no layout kept
    const pages = [...new Set(boxes.map((b) => b.page))];
    for (const n of pages) {
      const figure = el("figure", "page");
      figure.dataset.page = n;
      const frame = el("div", "page-frame");
      const img = el("img");
      img.alt = `${p.title} · p. ${n}`;
      showImage(img, `/v1/documents/${encodeURIComponent(p.document_id)}/pages/${n}?${inKb}`);
      frame.appendChild(img);
      for (const b of boxes.filter((x) => x.page === n)) {
        const hl = el("div", "highlight");
        hl.style.left = `${b.x0 * 100}%`;
        hl.style.top = `${b.y0 * 100}%`;
        hl.style.width = `${(b.x1 - b.x0) * 100}%`;
        hl.style.height = `${(b.y1 - b.y0) * 100}%`;
        frame.appendChild(hl);
      }
      figure.append(frame, el("figcaption", null, `p. ${n}`));
      panelPages.appendChild(figure);
      img.addEventListener("load", () => {
        const first = frame.querySelector(".highlight");
        if (first && n === pages[0]) first.scrollIntoView({ block: "center" });
      }, { once: true });
    }
  }

  $("panel-close").addEventListener("click", () => { panel.hidden = true; });

  // ---- streaming ------------------------------------------------------------------------------
  async function ask(question) {
    const zh = isZh(question);
    const view = newTurn(question);
    const messages = history.concat([{ role: "user", content: question }]);
    let text = "", final = null;
    try {
      const res = await api("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
        body: JSON.stringify({ model: chatModel(), messages, stream: true, include_sources: false }),
      });
      if (!res.ok || !res.body) {
        let msg = res.statusText;
        try { const b = await res.json(); msg = (b.error && b.error.message) || msg; } catch (e) { /* not JSON */ }
        throw new Error(`${res.status} ${msg}`);
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder("utf-8");
      let buffer = "", done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (!data) continue;
          if (data === "[DONE]") { done = true; break; }
          const obj = JSON.parse(data);
          if (obj.error) throw new Error(obj.error.message);
          const delta = obj.choices && obj.choices[0] && obj.choices[0].delta;
          if (delta && delta.content) {
            text += delta.content;
            view.answer.textContent = text;
          }
          if (obj.citations) final = obj;
        }
      }
      view.answer.classList.remove("streaming");
      if (final) renderCitations(view, final, zh);
      history.push({ role: "user", content: question }, { role: "assistant", content: text });
      history = history.slice(-8);
    } catch (e) {
      view.answer.classList.remove("streaming");
      view.answer.classList.add("error");
      view.answer.textContent = `${zh ? "出错了" : "Error"}: ${e.message}`;
    }
    view.turn.scrollIntoView({ block: "end" });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || busy) return;
    busy = true;
    send.disabled = true;
    input.value = "";
    try { await ask(question); } finally { busy = false; send.disabled = false; input.focus(); }
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  $("reset").addEventListener("click", () => {
    history = [];
    log.textContent = "";
    panel.hidden = true;
    input.focus();
  });

  refreshStatus();
  input.focus();
})();
