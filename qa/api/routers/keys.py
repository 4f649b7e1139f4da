"""API keys (admin keys only): create, list, revoke. ``qa keys`` does the same on the command line."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from qa.api.errors import ApiError
from qa.api.principal import principal_of
from qa.api.schemas import KeyBody, KeyCreatedOut, KeyListOut, KeyOut
from qa.keys import KeyService, Role
from qa.keys.base import KEY_ID_PATTERN

router = APIRouter(tags=["keys"])


def get_keys(request: Request) -> KeyService:
    return request.app.state.keys


@router.post("/v1/keys", response_model=KeyCreatedOut, status_code=201)
async def create_key(body: KeyBody, keys: KeyService = Depends(get_keys)) -> KeyCreatedOut:
    """A new key scoped to ``collections`` (null: all) with ``role``; the answer holds the key itself, once.
    The first key makes every request need one (within ``QA_KEY_CACHE_S`` on other replicas)."""
    try:
        token, record = await run_in_threadpool(
            keys.create, Role.named(body.role), body.collections, body.name, body.expires_at,
            body.rate_per_second, body.rate_per_minute)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    return KeyCreatedOut(**KeyOut.from_key(record).model_dump(), key=token)


@router.get("/v1/keys", response_model=KeyListOut)
async def list_keys(keys: KeyService = Depends(get_keys)) -> KeyListOut:
    """Every key, revoked and expired ones included (never a key's secret or hash)."""
    return KeyListOut(keys=[KeyOut.from_key(k) for k in await run_in_threadpool(keys.list)])


@router.delete("/v1/keys/{key_id}", response_model=KeyOut)
async def revoke_key(request: Request, key_id: str = Path(..., pattern=KEY_ID_PATTERN),
                     keys: KeyService = Depends(get_keys)) -> KeyOut:
    """Revoke a key: refused at once by this server, within ``QA_KEY_CACHE_S`` by other replicas. The key
    a request is made with cannot revoke itself (409), so the last admin key is not lost by mistake."""
    if principal_of(request.scope).key_id == key_id:
        raise ApiError(409, "own_key", f"{key_id} is the key this request is made with: revoke it with another "
                       "admin key or with `qa keys revoke`")
    record = await run_in_threadpool(keys.revoke, key_id)
    if record is None:
        raise ApiError(404, "not_found", f"no API key with id {key_id!r}; GET /v1/keys lists them")
    return KeyOut.from_key(record)
