"""Failed-login throttling: in memory for one process, in Redis when several share the load."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Protocol

import redis

from common.errors import RateLimitedError


class FailureLimiter(Protocol):
    def check(self, key: str) -> None:
        """Raise RateLimitedError while `key` has too many recent failures."""

    def record_failure(self, key: str) -> None: ...

    def reset(self, key: str) -> None: ...


def _refuse(retry_after: float) -> RateLimitedError:
    seconds = max(1, math.ceil(retry_after))
    return RateLimitedError(
        f"尝试次数过多，请 {seconds} 秒后再试", retry_after=seconds, detail={"retry_after": seconds}
    )


class InMemoryFailureLimiter:
    def __init__(self, *, max_failures: int, window_seconds: int) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._failures.setdefault(key, deque())
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return stamps

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            stamps = self._recent(key, now)
            if len(stamps) >= self.max_failures:
                raise _refuse(stamps[0] + self.window - now)

    def record_failure(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of usernames
                self._failures.clear()

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class RedisFailureLimiter:
    """A fixed window per key: INCR + EXPIRE, shared by every web process."""

    def __init__(self, client: redis.Redis, *, max_failures: int, window_seconds: int) -> None:
        self.client = client
        self.max_failures = max_failures
        self.window = window_seconds

    def _key(self, key: str) -> str:
        return f"tongke:login-failures:{key}"

    def check(self, key: str) -> None:
        count: bytes | None = self.client.get(self._key(key))  # type: ignore[assignment]
        if count is not None and int(count) >= self.max_failures:
            ttl: int = self.client.ttl(self._key(key))  # type: ignore[assignment]
            raise _refuse(ttl if ttl > 0 else self.window)

    def record_failure(self, key: str) -> None:
        pipe = self.client.pipeline()
        pipe.incr(self._key(key))
        pipe.expire(self._key(key), self.window, nx=True)
        pipe.execute()

    def reset(self, key: str) -> None:
        self.client.delete(self._key(key))


def make_failure_limiter(
    redis_url: str | None, *, max_failures: int, window_seconds: int
) -> FailureLimiter:
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        return RedisFailureLimiter(client, max_failures=max_failures, window_seconds=window_seconds)
    return InMemoryFailureLimiter(max_failures=max_failures, window_seconds=window_seconds)
