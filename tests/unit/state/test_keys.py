from __future__ import annotations

import re

import pytest

from bot_v2.errors import StateKeyError
from bot_v2.state.keys import KeySpace, glob_to_regex, literal_prefix


def test_relative_keys_are_namespaced_in_redis() -> None:
    space = KeySpace("bot-a")
    assert space.check("orders:pb-123") == "orders:pb-123"
    assert space.redis_key("orders:pb-123") == "state:bot-a:orders:pb-123"
    assert space.from_redis(b"state:bot-a:orders:pb-123") == "orders:pb-123"


@pytest.mark.parametrize(
    "names",
    [
        [],
        [b"state:bot-a:orders:1"],
        [b"state:bot-a:orders:1", b"state:bot-a:", "state:bot-a:\u00e9t\u00e9".encode()],
        [b"state:bot-a:x:state:bot-a:y", b"state:bot-a:z"],  # the prefix inside a key stays
        [b"state:bot-a:a\nstate:bot-a:b", b"state:bot-a:c"],  # a newline (no bot key has one)
    ],
)
def test_many_redis_names_map_as_one_by_one(names: list[bytes]) -> None:
    space = KeySpace("bot-a")
    assert space.from_redis_many(names) == [space.from_redis(name) for name in names]


@pytest.mark.parametrize(
    "key",
    [
        "",
        " ",
        "orders: x",
        "orders:\tx",
        "orders:*",
        "orders:?",
        "orders:[a]",
        "a\\b",
        "bot-a:orders:1",
        ":x",
        "x" * 300,
        "orders:\x00",
        5,
        None,
    ],
)
def test_bad_keys_are_rejected(key: object) -> None:
    with pytest.raises(StateKeyError):
        KeySpace("bot-a", max_key_bytes=256).check(key)


@pytest.mark.parametrize("bot_id", ["", "a:b", "a*", "a b", "x" * 65])
def test_bad_bot_ids_are_rejected(bot_id: str) -> None:
    with pytest.raises(StateKeyError):
        KeySpace(bot_id)


def test_patterns_allow_globs_but_stay_relative() -> None:
    space = KeySpace("bot-a")
    assert space.check_pattern("orders:*") == "orders:*"
    with pytest.raises(StateKeyError):
        space.check_pattern("bot-a:*")
    with pytest.raises(StateKeyError):
        space.check_pattern("a b*")


def test_check_many_dedupes_in_order() -> None:
    assert KeySpace("b").check_many(["x:1", "x:2", "x:1"]) == ["x:1", "x:2"]


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("orders:*", ["orders:", "orders:a.b"], ["order:a", "xorders:a"]),
        ("o?:1", ["oa:1"], ["o:1", "oab:1"]),
        ("k[ab]", ["ka", "kb"], ["kc"]),
        ("k[^a]", ["kb"], ["ka"]),
        ("k[!a]", ["kb"], ["ka"]),
        ("a.b+(c)", ["a.b+(c)"], ["aXb+(c)"]),
    ],
)
def test_glob_to_regex(pattern: str, yes: list[str], no: list[str]) -> None:
    regex = re.compile(glob_to_regex(pattern))
    assert all(regex.match(k) for k in yes)
    assert not any(regex.match(k) for k in no)


def test_literal_prefix() -> None:
    assert literal_prefix("orders:pb-*") == "orders:pb-"
    assert literal_prefix("*") == ""
    assert literal_prefix("plain") == "plain"
