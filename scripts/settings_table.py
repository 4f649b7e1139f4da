"""The README's configuration table, generated from qa.settings.Settings.

    .venv/bin/python scripts/settings_table.py            print the table
    .venv/bin/python scripts/settings_table.py --write    replace it in README.md (between the markers)
    .venv/bin/python scripts/settings_table.py --check    exit 1 when README.md's table is stale
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic_core import PydanticUndefined  # noqa: E402

from qa.settings import Settings  # noqa: E402

START, END = "<!-- settings:start -->", "<!-- settings:end -->"
README = ROOT / "README.md"

# Meanings for fields whose Field(...) has no description yet (a description in qa/settings.py wins).
FALLBACK = {
    "embedder": "Passage/question encoder: EmbeddingGemma-300m via sentence-transformers, or the light USE-m v3.",
    "embed_batch_size": "Passages per forward pass of the embedding model.",
    "torch_threads": "CPU threads torch may use for embedding.",
    "hnsw_m": "HNSW graph degree (only above the approximate threshold).",
    "hnsw_ef_search": "HNSW search breadth (only above the approximate threshold).",
    "heading_max_chars": "A single line up to this long, without closing punctuation, counts as a section heading (.txt).",
    "host": "Interface `qa serve` binds.",
    "port": "Port `qa serve` listens on.",
    "max_query_chars": "Longest question accepted (422 above).",
    "max_upload_bytes": "Largest document upload or JSON body (413 above).",
    "llm_base_url": "Optional OpenAI-compatible endpoint for generated chat answers; unset: none.",
    "llm_api_key": "API key for that endpoint.",
    "llm_model": "Model name to request from that endpoint.",
    "llm_timeout_s": "Seconds to wait for that endpoint.",
}


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "unset"
    return getattr(annotation, "__name__", str(annotation)).replace("Path", "path")


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, Path) and value.is_relative_to(Path.home()):
            value = "~/" + str(value.relative_to(Path.home()))
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"`{value:_}`".replace("_", " ")
    return f"`{value}`"


def table() -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or FALLBACK.get(name, "")).replace("|", r"\|")
        rows.append(f"| `{prefix}{name.upper()}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def _with_table(text: str) -> str:
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"README.md has no {START} … {END} markers")
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else ""
    if arg == "--write":
        README.write_text(_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    elif arg == "--check":
        current = README.read_text(encoding="utf-8")
        if _with_table(current) != current:
            print("README.md: the configuration table differs from qa/settings.py; "
                  "run `.venv/bin/python scripts/settings_table.py --write`", file=sys.stderr)
            sys.exit(1)
    else:
        print(table())
