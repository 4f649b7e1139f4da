"""``qa bench --auth``: what API keys and rate limits cost per request, measured in one run.

Two real ``qa serve`` processes on copies of one data folder (XQuAD paragraphs, ingested once): one
without keys (the open loopback default) and one with a key that every request sends, whose rate limit
is high enough never to refuse (so the limiter counts every request). They run side by side and are
measured alternately, in rounds, by one client sending one request at a time over a kept-alive
connection: a cheap route (``GET /v1/models``) and a search (``POST /v1/search``, distinct questions).
The figure is the difference of the p50s (and p99s) between the two; the load average is printed with
it, since a shared machine moves both alike but widens the spread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.benchmark import latency_summary, load_xquad, machine_info, make_qa
from qa.settings import Settings

ROUTES = ("GET /v1/models", "POST /v1/search")
HIGH_LIMITS = {"QA_RATE_LIMIT_PER_SECOND": "1000000", "QA_RATE_LIMIT_PER_MINUTE": "60000000"}


def _prepare(tmp: Path, settings: Settings, docs: list[dict], console: Console) -> Path:
    """A data folder holding ``docs`` (ingested by a server of its own, then stopped)."""
    import httpx

    prep = make_qa(tmp, "prep", settings.cache_dir)
    prep.server.start()
    try:
        with httpx.Client(trust_env=False) as http:
            prep.server.wait_ready(lambda: prep.ready(http))
            prep.ingest(http, docs)
    finally:
        prep.server.stop()
    console.print(f"  ingested {len(docs)} passages")
    return tmp / "prep-data"


def run_auth_overhead(settings: Settings, *, eval_dir: Path, passages: int = 60, requests: int = 200,
                      rounds: int = 5, warmup: int = 20, console: Console | None = None) -> dict:
    """p50/p99 per request of the two servers and their difference (milliseconds); printed and returned."""
    import httpx

    from qa.keys import KeyService, Role
    from qa.keys.sqlite import SqliteKeyStore

    console = console or Console()
    docs, questions = load_xquad(eval_dir, passages)
    if not docs:
        raise FileNotFoundError(f"no XQuAD passages under {eval_dir}/xquad")
    texts = [q["q"] for q in questions]
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-auth-"))
    figures: dict = {"machine": machine_info(), "params": {
        "passages": len(docs), "requests_per_round": requests, "rounds": rounds, "warmup": warmup,
        "embedder": settings.embedder, "key_cache_s": settings.key_cache_s}, "load_average": []}
    servers = {}
    try:
        console.print("[bold]preparing the data folder[/bold]")
        data = _prepare(tmp, settings, docs, console)
        for label in ("keys-off", "keys-on"):
            shutil.copytree(data, tmp / f"{label}-data")
        keys = KeyService(lambda: SqliteKeyStore(tmp / "keys-on-data" / "keys.sqlite"))
        token, _ = keys.create(Role.READ, None, name="bench")
        keys.close()
        headers = {"keys-off": {}, "keys-on": {"Authorization": f"Bearer {token}"}}
        for label in headers:
            servers[label] = make_qa(tmp, label, settings.cache_dir, tmp / f"{label}-data", **HIGH_LIMITS)
            servers[label].server.start()
        times: dict[str, dict[str, list[float]]] = {label: {r: [] for r in ROUTES} for label in servers}
        with httpx.Client(trust_env=False, timeout=120) as http:
            for label, system in servers.items():
                system.server.wait_ready(lambda: system.ready(http))
            asked = {label: 0 for label in servers}  # each server is asked the same questions in the same order

            def send(label: str, route: str, record: bool) -> None:
                url = servers[label].url
                started = time.perf_counter()
                if route == "GET /v1/models":
                    resp = http.get(url + "/v1/models", headers=headers[label])
                else:
                    resp = http.post(url + "/v1/search", headers=headers[label],
                                     json={"query": texts[asked[label] % len(texts)], "top_k": 5})
                    asked[label] += 1
                elapsed = time.perf_counter() - started
                if resp.status_code != 200:
                    raise RuntimeError(f"{label} {route}: {resp.status_code} {resp.text[:300]}")
                if record:
                    times[label][route].append(elapsed)

            for label in servers:  # model, caches, connections, the key's cache entry
                for route in ROUTES:
                    for _ in range(warmup):
                        send(label, route, False)
            for r in range(rounds):
                figures["load_average"].append(round(os.getloadavg()[0], 2))
                console.print(f"  round {r + 1}/{rounds} (load average {os.getloadavg()[0]:.1f})")
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for route in ROUTES:
                    for label in order:
                        for _ in range(requests):
                            send(label, route, True)
    finally:
        for system in servers.values():
            system.server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    figures["routes"] = {}
    table = Table(title="API keys and rate limits: cost per request (ms)")
    for column in ("route", "keys off p50", "keys on p50", "Δ p50", "keys off p99", "keys on p99", "Δ p99", "n"):
        table.add_column(column, justify="left" if column == "route" else "right")
    for route in ROUTES:
        off, on = latency_summary(times["keys-off"][route]), latency_summary(times["keys-on"][route])
        row = {"keys_off": off, "keys_on": on, "delta_p50_ms": on["p50_ms"] - off["p50_ms"],
               "delta_p99_ms": on["p99_ms"] - off["p99_ms"]}
        figures["routes"][route] = row
        table.add_row(route, f"{off['p50_ms']:.2f}", f"{on['p50_ms']:.2f}", f"{row['delta_p50_ms']:+.2f}",
                      f"{off['p99_ms']:.2f}", f"{on['p99_ms']:.2f}", f"{row['delta_p99_ms']:+.2f}", str(on["n"]))
    console.print(table)
    console.print(f"load average per round: {figures['load_average']}; {figures['machine'].get('cpu', '')}")
    return figures
