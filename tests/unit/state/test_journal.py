"""The WARM outage journal file (state/journal.py): framing, one fsync per batch, torn tails cut."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot_v2.errors import StateIntegrityError
from bot_v2.state import journal as jmod
from bot_v2.state.journal import FORMAT, Journal, JournalRecord


def rec(seq: int, key: str = "orders:1", value: bytes = b'"v"', op: str = "put") -> JournalRecord:
    return JournalRecord(FORMAT, seq, 3, op, key, "orders", seq, "c", value, None, 1_700_000_000_000)


async def test_append_then_open_returns_every_record_in_order(tmp_path: Path) -> None:
    j = Journal(tmp_path / "bot")
    await j.append([rec(1), rec(2, "intents:a")])
    await j.append([rec(3, op="delete", value=b"")])
    assert j.records == 3 and j.next_seq == 4 and j.journal_id
    again = Journal(tmp_path / "bot")
    scan = again.open()
    assert [r.seq for r in scan.records] == [1, 2, 3]
    assert scan.records[1].key == "intents:a" and scan.records[2].op == "delete"
    assert scan.journal_id == j.journal_id and scan.torn_bytes == 0
    assert again.next_seq == 4 and again.records == 3


async def test_one_fsync_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(jmod.os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    j = Journal(tmp_path / "bot")
    await j.append([rec(i) for i in range(1, 6)])  # first batch: the file and its directory
    first = len(calls)
    await j.append([rec(i) for i in range(6, 50)])
    assert first == 2 and len(calls) == first + 1


@pytest.mark.parametrize("cut", [1, 5, 11, 30])
async def test_torn_tail_is_cut_at_the_last_good_record(tmp_path: Path, cut: int) -> None:
    j = Journal(tmp_path / "bot")
    await j.append([rec(1), rec(2)])
    good = j.path.stat().st_size
    await j.append([rec(3, value=b"x" * 40)])
    full = j.path.read_bytes()
    j.path.write_bytes(full[: len(full) - cut])  # the last write did not finish
    scan = Journal(tmp_path / "bot").open()
    assert [r.seq for r in scan.records] == [1, 2]
    assert scan.torn_bytes == len(full) - cut - good
    assert j.path.stat().st_size == good  # cut on disk too: the next append follows the last good record


async def test_nothing_after_a_corrupt_frame_is_replayed(tmp_path: Path) -> None:
    j = Journal(tmp_path / "bot")
    await j.append([rec(1)])
    middle = j.path.stat().st_size
    await j.append([rec(2)])
    await j.append([rec(3)])  # a valid frame after the damaged one: still cut
    data = bytearray(j.path.read_bytes())
    data[middle + 20] ^= 0xFF  # a flipped bit inside record 2's payload: its CRC fails
    j.path.write_bytes(bytes(data))
    scan = Journal(tmp_path / "bot").open()
    assert [r.seq for r in scan.records] == [1]
    assert j.path.stat().st_size == middle


async def test_a_reader_never_changes_the_file(tmp_path: Path) -> None:
    j = Journal(tmp_path / "bot")
    await j.append([rec(1), rec(2)])
    data = j.path.read_bytes()
    j.path.write_bytes(data[:-3])
    scan = Journal(tmp_path / "bot").open(cut=False)
    assert [r.seq for r in scan.records] == [1] and j.path.read_bytes() == data[:-3]


async def test_truncate_starts_a_new_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path / "bot")
    await j.append([rec(1)])
    first = j.journal_id
    await j.truncate()
    assert j.records == 0 and j.next_seq == 1
    await j.settle()
    assert not j.path.exists()
    assert Journal(tmp_path / "bot").open().records == []
    await j.append([rec(1)])
    assert j.journal_id != first


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path / "bot")
    j.path.parent.mkdir(parents=True)
    j.path.write_bytes(jmod.frame(rec(1)))  # a write frame where the opening record must be
    with pytest.raises(StateIntegrityError, match="opening record"):
        j.open()
