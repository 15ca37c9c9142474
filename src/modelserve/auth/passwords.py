"""Password hashing (Argon2id via pwdlib) with bounded concurrency, and the password policy.

Hashing is deliberately expensive, so it runs on a small dedicated thread pool (argon2 releases
the GIL) and at most `concurrency + queue` hashes may be in progress or waiting: past that,
logins are refused with 503 at once instead of piling up (S4). Unknown users are checked
against a dummy hash of the same cost, so "no such user" takes as long as "wrong password" (S5).
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import Any, ParamSpec, TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from modelserve.errors import InvalidInputError, OverloadedError

P = ParamSpec("P")
T = TypeVar("T")

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128


class PasswordHasher:
    """Hashes and verifies passwords off the event loop, a bounded number at a time."""

    def __init__(
        self, *, memory_kib: int, time_cost: int, concurrency: int = 1, queue: int = 32
    ) -> None:
        # parallelism=1: one hash uses one core; concurrency decides how many cores logins get.
        hasher = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._hash = PasswordHash((hasher,))
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="modelserve-argon2"
        )
        self._capacity = concurrency + queue
        self._in_progress = 0
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """The Argon2id hash of `password`."""
        return await self._run(self._hash.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """(matches, new hash) where the new hash is set when the stored one used old costs."""
        return await self._run(self._hash.verify_and_update, password, hashed)

    async def prepare(self) -> None:
        """Make the dummy hash now, so the first unknown-user login is not slower than others."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))

    async def verify_dummy(self, password: str) -> bool:
        """Spend the time of one verification without a user (unknown usernames, S5).

        Returns the verification's result, always False (the dummy's password is random and
        kept nowhere), so callers and tests can see it never lets anyone in.
        """
        await self.prepare()
        assert self._dummy is not None
        matches: bool = await self._run(self._hash.verify, password, self._dummy)
        return matches

    def hash_sync(self, password: str) -> str:
        """Hash on the calling thread (CLI and bootstrap, where no loop is running)."""
        return self._hash.hash(password)

    def close(self) -> None:
        """Stop the hashing threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._in_progress >= self._capacity:
            raise OverloadedError("too many logins in progress; retry shortly", retry_after_s=1)
        self._in_progress += 1
        future: Future[T] = self._executor.submit(fn, *args, **kwargs)
        # Counted until the thread is done, not until the caller stops waiting: a cancelled
        # request does not free the core its hash is still using.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future[Any]) -> None:
        self._in_progress -= 1


def check_password_policy(password: str, *, username: str | None = None) -> None:
    """Raise InvalidInputError unless `password` is acceptable (S16, ASVS 6.2).

    8 to 128 characters, counted as given (no trimming, no truncation: Argon2 hashes all of
    it), any characters, no composition rules; not a well-known password nor the username.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise _weak(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise _weak(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    folded = normalize_name(password)
    if folded in common_passwords():
        raise _weak("password is too common; choose another")
    if username is not None and folded == normalize_name(username):
        raise _weak("password must not be the username")


def normalize_name(value: str) -> str:
    """Compatibility-normalized, case-folded text: how usernames are stored and compared."""
    return unicodedata.normalize("NFKC", value).casefold()


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (only those long enough to pass the length rule)."""
    text = resources.files("modelserve.auth").joinpath("common_passwords.txt").read_text("utf-8")
    words = (line.strip() for line in text.splitlines())
    return frozenset(
        normalize_name(w) for w in words if len(w) >= MIN_PASSWORD_LENGTH and not w.startswith("#")
    )


def _weak(message: str) -> InvalidInputError:
    return InvalidInputError(message, details=[{"loc": ["password"], "msg": message}])
