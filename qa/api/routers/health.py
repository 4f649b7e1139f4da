"""GET /healthz: ready or not, the model, how many passages.

Open to every request (liveness checks send no key). Where keys are required (or cannot be checked: their
store is unreachable), a request without a key that sees every collection learns only ``ready`` and
``status``: the counts, the model, the seeds folder and any start-up error are for keys that see
everything (the other fields are null). Either way a store that cannot be reached answers 503."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from qa.api.deps import get_holder
from qa.api.principal import principal_of
from qa.api.schemas import HealthOut
from qa.wiring import ServiceHolder

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request, holder: ServiceHolder = Depends(get_holder)) -> JSONResponse:
    s = holder.services
    body = HealthOut(  # read in full either way: a store that cannot be reached makes this a 503
        ready=s is not None, status=holder.status, error=holder.error,
        model=s.embedder.model_id if s else None,
        passages=s.corpus.store.count_passages() if s else None,
        documents=s.corpus.store.count_documents() if s else None,
        collections=len(s.corpus.store.list_collections()) if s else None,
        index_lag=s.corpus.lag if s else None,
        answerable_threshold=s.search.threshold if s else None, seeds=holder.seeds,
        dictionary=s.dictionary_status if s else None, startup_s=holder.startup_s or None,
    )
    if not principal_of(request.scope).sees_all:
        body = HealthOut(ready=body.ready, status=body.status, model=None, passages=None, documents=None)
    return JSONResponse(body.model_dump(), status_code=200 if s is not None else 503)
