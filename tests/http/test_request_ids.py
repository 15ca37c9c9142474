"""Generated request ids: unique in a process and across forked workers."""

from __future__ import annotations

import os
import re

from modelserve.http.context import request_id_from
from modelserve.observability.request_ids import is_made_here, new_request_id


def test_ids_are_unique_and_plain() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_forked_child_draws_a_new_prefix() -> None:
    parent = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its first id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child[:16] != parent[:16]


def test_client_id_kept_only_when_plain() -> None:
    assert request_id_from([(b"x-request-id", b"abc-123")]) == "abc-123"
    made = request_id_from([(b"x-request-id", b"bad id\r\n")])
    assert made != "bad id\r\n" and len(made) == 32


def test_a_credential_shaped_client_id_is_replaced() -> None:
    key = b"ms_0123456789ab_" + b"k" * 43
    made = request_id_from([(b"x-request-id", key)])
    assert made != key.decode() and is_made_here(made)


def test_made_ids_are_recognised() -> None:
    assert is_made_here(new_request_id())
    assert not is_made_here("abc-123")
