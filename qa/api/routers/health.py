"""GET /healthz: ready or not, the model, how many passages."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from qa.api.deps import get_holder
from qa.api.schemas import HealthOut
from qa.wiring import ServiceHolder

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz(holder: ServiceHolder = Depends(get_holder)) -> JSONResponse:
    s = holder.services
    body = HealthOut(
        ready=s is not None, status=holder.status, error=holder.error,
        model=s.embedder.model_id if s else None,
        passages=s.corpus.store.count_passages() if s else None,
        documents=s.corpus.store.count_documents() if s else None,
        collections=len(s.corpus.store.list_collections()) if s else None,
        index_lag=s.corpus.lag if s else None,
        answerable_threshold=s.search.threshold if s else None, seeds=holder.seeds,
        dictionary=s.dictionary_status if s else None, startup_s=holder.startup_s or None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if s is not None else 503)
