"""Who made a request (set by :mod:`qa.api.auth` on every HTTP request) and what that lets it see."""

from __future__ import annotations

from starlette.types import Scope

from qa.keys.base import Principal, Role
from qa.store.base import CollectionNotFoundError

SCOPE_KEY = "qa.principal"
KEY_ID = "qa.key_id"  # the key's id for the access log (never the key)
ANONYMOUS = Principal(None, Role.READ, frozenset())  # no valid key where one is required: sees nothing


def principal_of(scope: Scope) -> Principal:
    """The request's principal; a request the auth layer did not see counts as one without a key."""
    return scope.get(SCOPE_KEY, ANONYMOUS)


def require_collection(principal: Principal, name: str, all_names) -> None:
    """A collection outside the key's scope is answered exactly as a missing one (404, listing only the
    collections the key sees), so a key cannot even learn that it exists. ``all_names``: a callable
    giving every collection's name (only called for the refusal)."""
    if not principal.sees(name):
        raise CollectionNotFoundError(name, principal.visible(all_names()))


def hide_unseen(principal: Principal, exc: CollectionNotFoundError) -> CollectionNotFoundError:
    """``exc`` listing only the collections ``principal`` sees."""
    return CollectionNotFoundError(exc.name, principal.visible(exc.known))
