"""pg_connect.split_hosts: one URL per host of a multi-host DATABASE_URL, everything else kept."""

from __future__ import annotations

import pytest

from bot_v2.state.tiers.pg_connect import split_hosts


def test_a_multi_host_url_becomes_one_url_per_host_with_user_database_and_options() -> None:
    url = "postgresql://bot:pw@10.0.0.1:5432,10.0.0.2:5433,[::1]:5434/perps?target_session_attrs=read-write"
    assert split_hosts(url) == [
        "postgresql://bot:pw@10.0.0.1:5432/perps?target_session_attrs=read-write",
        "postgresql://bot:pw@10.0.0.2:5433/perps?target_session_attrs=read-write",
        "postgresql://bot:pw@[::1]:5434/perps?target_session_attrs=read-write",
    ]
    assert split_hosts("postgres://h1,h2/db") == ["postgres://h1/db", "postgres://h2/db"]


@pytest.mark.parametrize(
    "url", ["postgresql://bot:pw@10.0.0.1:5432/perps", "postgresql:///perps?host=/tmp", "not a url"]
)
def test_a_one_host_url_is_left_alone(url: str) -> None:
    assert split_hosts(url) == [url]
