"""Request dependencies: the services, once they are ready."""

from __future__ import annotations

from fastapi import Request

from qa.api.errors import ApiError
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
