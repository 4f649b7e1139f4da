"""Request dependencies: the services, once they are ready; the collection a request names, once its key
may see it."""

from __future__ import annotations

from fastapi import Depends, Query, Request

from qa.api.errors import ApiError
from qa.api.principal import principal_of, require_collection
from qa.store.base import DEFAULT_COLLECTION
from qa.wiring import ServiceHolder, Services


def get_holder(request: Request) -> ServiceHolder:
    return request.app.state.holder


def get_services(request: Request) -> Services:
    holder: ServiceHolder = request.app.state.holder
    if holder.services is None:
        if holder.error:
            raise ApiError(503, "service_failed", f"the service failed to start: {holder.error}")
        raise ApiError(503, "not_ready", f"the service is still starting ({holder.status}); retry in a moment")
    return holder.services


def check_collection(request: Request, services: Services, name: str) -> None:
    """404, exactly as for a missing collection, when the request's key does not see ``name``."""
    require_collection(principal_of(request.scope), name,
                       lambda: [c.name for c in services.documents.list_collections()])


def scoped_collection(request: Request, collection: str = Query(
        DEFAULT_COLLECTION, description="The knowledge base (GET /v1/collections lists them).")) -> str:
    check_collection(request, get_services(request), collection)
    return collection


ScopedCollection = Depends(scoped_collection)  # the ?collection= parameter, within the key's scope
