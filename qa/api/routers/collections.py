"""Collections (knowledge bases): create, list, read, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from qa.api.deps import check_collection, get_services
from qa.api.principal import principal_of
from qa.api.schemas import CollectionBody, CollectionListOut, CollectionOut
from qa.wiring import Services

router = APIRouter(tags=["collections"])


@router.post("/v1/collections", response_model=CollectionOut, status_code=201)
def create_collection(body: CollectionBody, services: Services = Depends(get_services)) -> CollectionOut:
    """A new, empty knowledge base (409 when the name is taken, 422 when it breaks the naming rule)."""
    return CollectionOut.from_collection(services.documents.create_collection(body.name, body.description))


@router.get("/v1/collections", response_model=CollectionListOut)
def list_collections(request: Request, services: Services = Depends(get_services)) -> CollectionListOut:
    """The collections the request's key sees."""
    sees = principal_of(request.scope).sees
    return CollectionListOut(collections=[CollectionOut.from_collection(c)
                                          for c in services.documents.list_collections() if sees(c.name)])


@router.get("/v1/collections/{name}", response_model=CollectionOut)
def get_collection(name: str, request: Request, services: Services = Depends(get_services)) -> CollectionOut:
    check_collection(request, services, name)
    return CollectionOut.from_collection(services.documents.collection(name))


@router.delete("/v1/collections/{name}")
async def delete_collection(name: str, request: Request, services: Services = Depends(get_services)) -> dict:
    """Remove the collection with every document, passage and index entry in it (``default`` is emptied and
    stays)."""
    await run_in_threadpool(check_collection, request, services, name)
    await run_in_threadpool(services.documents.delete_collection, name)
    return {"deleted": name}
