"""The key-store contract: every KeyStore backend must pass this suite (SQLite in the data folder,
PostgreSQL for QA_STORE=postgres). A second store opened on the same place stands for another process
or replica: it sees what the first wrote."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from qa.keys.base import KeyStore, Role, new_key, parse_key, utcnow
from qa.keys.sqlite import SqliteKeyStore


def _sqlite(tmp_path: Path) -> KeyStore:
    return SqliteKeyStore(tmp_path / "keys.sqlite")


def _postgres(tmp_path: Path) -> KeyStore:
    from engines import shared_postgres, storage_name
    from qa.keys.postgres import PostgresKeyStore

    return PostgresKeyStore(shared_postgres().database(storage_name(tmp_path)))


KEY_BACKENDS: dict[str, Callable[[Path], KeyStore]] = {"sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(KEY_BACKENDS))
def stores(request, tmp_path):
    first, second = (KEY_BACKENDS[request.param](tmp_path) for _ in range(2))
    yield first, second
    first.close()
    second.close()


def test_a_key_round_trips_without_its_secret(stores):
    store, other = stores
    assert store.count() == 0 and store.list() == [] and store.get("0123456789ab") is None
    expires = utcnow() + timedelta(days=3)
    token, record = new_key("open-webui", Role.READ, ["hr", "finance", "hr"], expires, 2.5, 100)
    store.add(record)
    key_id, secret = parse_key(token)
    found = other.get(key_id)
    assert found == record
    assert found.collections == ("finance", "hr") and found.expires_at == expires and found.rate_per_minute == 100
    assert found.matches(secret) and not found.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert found.state() == "active" and found.principal().sees("hr") and not found.principal().sees("legal")
    assert other.count() == 1 and [k.id for k in other.list()] == [key_id]


def test_admin_and_all_collection_keys_see_everything(stores):
    store, _ = stores
    for role, collections in ((Role.ADMIN, ["hr"]), (Role.READ, None)):
        _, record = new_key("", role, collections)
        store.add(record)
        assert store.get(record.id).collections is None and store.get(record.id).principal().sees_all


def test_revoking_is_seen_everywhere_keeps_the_first_time_and_still_counts(stores):
    store, other = stores
    _, record = new_key("ci", Role.WRITE, ["docs"])
    store.add(record)
    first = utcnow()
    revoked = store.revoke(record.id, first)
    assert revoked.revoked_at == first and revoked.state() == "revoked"
    assert other.get(record.id).state() == "revoked"
    assert other.revoke(record.id, first + timedelta(hours=1)).revoked_at == first
    assert store.revoke("0123456789ab", first) is None
    assert other.count() == 1  # revoking the last key does not open the service


def test_an_expired_key_says_so(stores):
    store, _ = stores
    _, record = new_key("", Role.READ, None, utcnow() + timedelta(seconds=1))
    store.add(record)
    assert store.get(record.id).state(utcnow() + timedelta(seconds=2)) == "expired"
