"""POST /v1/search: cited passages for a question."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from qa.api.deps import check_collection, get_services
from qa.api.errors import ApiError
from qa.api.schemas import SearchBody, SearchOut
from qa.retrieval.types import SearchRequest
from qa.wiring import Services

router = APIRouter(tags=["search"])


@router.post("/v1/search", response_model=SearchOut)
def search(body: SearchBody, request: Request, services: Services = Depends(get_services)) -> SearchOut:
    check_collection(request, services, body.collection)
    limit = services.settings.max_query_chars
    if len(body.query) > limit:
        raise ApiError(422, "query_too_long", f"query has {len(body.query)} characters; the limit is {limit}")
    result = services.search.search(SearchRequest(
        query=body.query, top_k=body.top_k, lang=body.lang,
        document_ids=tuple(body.document_ids) if body.document_ids is not None else None, explain=body.explain,
        collection=body.collection, sources=tuple(body.sources) if body.sources is not None else None,
        published_from=body.published_from, published_to=body.published_to,
    ))
    return SearchOut.from_result(result, boxes=lambda hit: evidence_boxes(services, hit))


def evidence_boxes(services: Services, hit) -> list[dict]:
    """The evidence's boxes on its page(s), for documents with a layout (PDFs, scans)."""
    if services.originals is None:
        return []
    p = hit.passage
    return services.originals.boxes(p.collection, p.document_id, hit.evidence.start, hit.evidence.end)
