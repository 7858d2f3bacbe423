"""The teaching store: keys are sha256 hex digests, content is kept once, lookups are exact."""

from __future__ import annotations

import pytest

import howto
from howto import CAStore

# FIPS 180-2, appendix B.1 and B.3 (the empty-message digest is the well-known one).
ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MILLION_A = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"


def test_exported_from_the_package():
    assert howto.CAStore is CAStore


@pytest.mark.parametrize(
    "content, key", [(b"abc", ABC), (b"", EMPTY), (b"a" * 1_000_000, MILLION_A)]
)
def test_put_returns_the_published_sha256(content, key):
    store = CAStore()
    assert store.put(content) == key
    assert store.get(key) == content


def test_same_content_is_stored_once():
    store = CAStore()
    first = store.put(b"the same bytes")
    second = store.put(bytearray(b"the same bytes"))
    assert first == second
    assert len(store) == 1
    store.put(b"other bytes")
    assert len(store) == 2


def test_different_content_gets_different_keys():
    store = CAStore()
    keys = {store.put(bytes([i])) for i in range(256)}
    assert len(keys) == 256 == len(store)
    assert sorted(store.get(k) for k in keys) == [bytes([i]) for i in range(256)]


def test_unknown_key_raises_key_error():
    store = CAStore()
    store.put(b"abc")
    with pytest.raises(KeyError):
        store.get(EMPTY)
    with pytest.raises(KeyError):
        store.get(ABC.upper())  # keys are exact strings
    assert ABC in store and EMPTY not in store


def test_stored_content_cannot_change_behind_the_key():
    store = CAStore()
    buffer = bytearray(b"abc")
    key = store.put(buffer)
    buffer[0] = ord("x")
    assert store.get(key) == b"abc"
    assert isinstance(store.get(key), bytes)
