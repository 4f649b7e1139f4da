"""The MCP server, through the official ``mcp`` client: ``qa mcp`` over stdio, and /mcp in the HTTP service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import QAServer, qa_command, qa_env

QUESTION = "上海创智学院有多少研究生？"


def stdio_params(tmp_path: Path) -> StdioServerParameters:
    cmd = qa_command()
    return StdioServerParameters(
        command=cmd[0], args=[*cmd[1:], "mcp", "--data-dir", str(tmp_path / "data")], cwd=str(tmp_path),
        env=qa_env(QA_EMBEDDER="use-m", QA_ANSWERABLE_THRESHOLD="0"),
    )


def check_search_result(result: dict) -> None:
    assert result["results"], result
    for r in result["results"]:
        ev = r["evidence"]
        assert r["start"] <= ev["start"] < ev["end"] <= r["end"]
        assert r["text"][ev["start"] - r["start"]:ev["end"] - r["start"]] == ev["text"]


def test_stdio_tools_give_cited_results(tmp_path: Path):
    async def session():
        async with Client(stdio_params(tmp_path), read_timeout_seconds=300) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"search", "get_passage", "ask"}
            assert set(tools["search"].input_schema["properties"]) == {"query", "top_k", "lang", "collection"}
            assert tools["search"].input_schema["required"] == ["query"]
            assert tools["search"].output_schema is not None

            found = await client.call_tool("search", {"query": QUESTION, "top_k": 3})
            assert not found.is_error, found.content
            result = found.structured_content
            assert result["query"] == QUESTION and len(result["results"]) == 3
            check_search_result(result)
            assert any("190余名研究生" in r["text"] for r in result["results"])

            top = result["results"][0]
            passage = await client.call_tool("get_passage", {"passage_id": top["passage_id"]})
            assert not passage.is_error
            assert {k: passage.structured_content[k] for k in ("text", "start", "end", "document_id")} == \
                   {k: top[k] for k in ("text", "start", "end", "document_id")}

            english = await client.call_tool("search", {"query": "graduate students", "top_k": 2, "lang": "zh"})
            assert all(r["lang"] == "zh" for r in english.structured_content["results"])

            in_default = await client.call_tool("search", {"query": QUESTION, "top_k": 1, "collection": "default"})
            assert in_default.structured_content["results"][0]["collection"] == "default"
            for tool, args in (("search", {"query": QUESTION}), ("ask", {"question": QUESTION}),
                               ("get_passage", {"passage_id": top["passage_id"]})):
                missing = await client.call_tool(tool, {**args, "collection": "nowhere"})
                assert missing.is_error, (tool, missing.content)
                assert "nowhere" in missing.content[0].text and "default" in missing.content[0].text, missing.content

            answer = await client.call_tool("ask", {"question": QUESTION})
            assert not answer.is_error
            body = answer.structured_content
            assert body["answerable"] is True and body["citations"]
            assert "[1]" in body["answer"] and body["citations"][0]["evidence"]["text"] in body["answer"]
            assert body["citations"][0]["index"] == 1

            missing = await client.call_tool("get_passage", {"passage_id": "nope:1"})
            assert missing.is_error and "nope:1" in missing.content[0].text
            bad = await client.call_tool("search", {"query": QUESTION, "top_k": 0})
            assert bad.is_error

    asyncio.run(session())


def test_streamable_http_in_the_service(fast_server: QAServer):
    async def session():
        async with Client(f"{fast_server.base_url}/mcp", read_timeout_seconds=120) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"search", "get_passage", "ask"}
            found = await client.call_tool("search", {"query": "崇明区的产业优势", "top_k": 2})
            assert not found.is_error
            check_search_result(found.structured_content)
            answer = await client.call_tool("ask", {"question": "崇明区将发挥哪些产业优势？"})
            assert not answer.is_error
            assert set(answer.structured_content) >= {"answer", "answerable", "confidence", "citations"}

    asyncio.run(session())
