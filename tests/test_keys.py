"""API keys without a server: the key format and its salted hash, what KeyService accepts, how it
authenticates and caches (a fake clock), where the SQLite key store puts keys, and the rate limiter."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from qa.api.ratelimit import RateLimiter
from qa.keys import OPEN, KeyRefused, KeyService, Role, parse_key
from qa.keys.base import utcnow
from qa.keys.sqlite import SqliteKeyStore


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(path: Path, clock: Clock, cache_s: float = 5.0) -> KeyService:
    return KeyService(lambda: SqliteKeyStore(path / "keys.sqlite"), cache_s=cache_s, clock=clock)


def refusal(keys: KeyService, token: str | None) -> str:
    with pytest.raises(KeyRefused) as caught:
        keys.authenticate(token)
    return caught.value.reason


def test_keys_are_random_and_only_their_salted_hash_is_stored(tmp_path: Path):
    keys = service(tmp_path, Clock())
    tokens = [keys.create(Role.READ, ["a"])[0] for _ in range(20)]
    assert len(set(tokens)) == 20 and all(parse_key(t) for t in tokens)
    assert all(len(parse_key(t)[1]) == 43 for t in tokens)  # 256 random bits
    records = keys.list()
    assert len({r.salt for r in records}) == 20
    keys.close()
    stored = (tmp_path / "keys.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("keys.sqlite-*"))
    for token in tokens:
        assert parse_key(token)[0].encode() in stored  # the public id is kept
        assert parse_key(token)[1].encode() not in stored  # the secret never is


def test_what_create_refuses(tmp_path: Path):
    keys = service(tmp_path, Clock())
    for args, why in (((Role.ADMIN, ["a"]), "every collection"), ((Role.READ, []), "at least one"),
                      ((Role.READ, ["Bad Name"]), "not a valid collection name")):
        with pytest.raises(ValueError, match=why):
            keys.create(*args)
    with pytest.raises(ValueError, match="passed already"):
        keys.create(Role.READ, None, expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(ValueError, match="rate_per_second"):
        keys.create(Role.READ, None, rate_per_second=-1)
    assert keys.list() == []


def test_open_until_the_first_key_then_every_refusal_has_its_reason(tmp_path: Path):
    clock = Clock()
    keys = service(tmp_path, clock)
    assert keys.authenticate(None) is OPEN and keys.authenticate("qa_whatever") is OPEN
    token, record = keys.create(Role.WRITE, ["a", "b"], rate_per_second=3)
    assert refusal(keys, None) == "missing_key"  # its own key: at once
    principal = keys.authenticate(token)
    assert (principal.key_id, principal.role, principal.collections) == (record.id, Role.WRITE, {"a", "b"})
    assert principal.rate_per_second == 3 and principal.rate_per_minute is None
    key_id, secret = parse_key(token)
    assert refusal(keys, f"qa_{key_id}_{'A' * 43}") == "invalid_key"  # the right id, another secret
    assert refusal(keys, "qa_0123456789ab_" + "A" * 43) == "invalid_key"
    assert refusal(keys, "not a key") == "invalid_key"
    keys.revoke(record.id)
    assert refusal(keys, token) == "revoked_key"  # revoked here: at once
    assert refusal(keys, None) == "missing_key"  # a revoked last key keeps the service closed


def test_expired_keys_are_refused(tmp_path: Path):
    import time
    from datetime import datetime, timezone

    keys = service(tmp_path, Clock())
    expires = utcnow() + timedelta(seconds=3)
    token, _ = keys.create(Role.READ, None, expires_at=expires)
    assert keys.authenticate(token).sees_all
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    assert refusal(keys, token) == "expired_key"  # the cached record is checked against the clock each time


def test_changes_made_elsewhere_count_within_the_cache_time(tmp_path: Path):
    clock = Clock()
    server, command = service(tmp_path, clock, cache_s=5), service(tmp_path, clock)  # e.g. qa serve and qa keys
    assert server.authenticate(None) is OPEN
    token, record = command.create(Role.READ, ["a"])
    assert server.authenticate(None) is OPEN and not server.needs_store(None)  # cached: still open ...
    clock.now += 5.01
    assert server.needs_store(None)
    assert refusal(server, None) == "missing_key"  # ... until the cache time has passed
    assert server.needs_store(token)
    assert server.authenticate(token).key_id == record.id
    assert not server.needs_store(token)  # a cache hit: no I/O
    command.revoke(record.id)
    assert server.authenticate(token).key_id == record.id  # revoked elsewhere: within the cache time ...
    clock.now += 5.01
    assert refusal(server, token) == "revoked_key"  # ... it is refused


def test_rate_limits_admit_a_burst_then_say_how_long_to_wait():
    clock = Clock()
    limiter = RateLimiter(clock)
    limits = ((3, 1.0), (5, 60.0))
    assert [limiter.admit("k", limits) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit("k", limits) == pytest.approx(1 / 3)
    assert limiter.admit("other", limits) == 0.0  # per key
    clock.now += 1 / 3
    assert limiter.admit("k", limits) == 0.0
    clock.now += 1.0
    assert limiter.admit("k", limits) == 0.0  # the fifth in this minute
    clock.now += 1.0
    wait = limiter.admit("k", limits)  # the minute's five are used: the first comes back 12 s after it
    assert wait == pytest.approx(60 / 5 - (1 / 3 + 2.0), abs=1e-6)
    assert limiter.admit("k", limits) == pytest.approx(wait)  # a refusal is not counted
    assert all(limiter.admit("free", ((0, 1.0), (0, 60.0))) == 0.0 for _ in range(1000))  # 0: no limit
