"""``WalKeeper``: the SQLite WARM tier's write-ahead log, kept bounded and off the commit path.

WAL checkpoints are kept off the commit path. SQLite's automatic checkpoint runs inside the commit that
crosses ``wal_autocheckpoint`` pages (~4.5 ms with its fsyncs: the latency tail of the trading loop), so it
is switched off; instead, after a write whose WAL has grown past ``wal_checkpoint_pages``, a ``PASSIVE``
checkpoint is started on a second connection with its own thread, once the write's result is already handed
back. A WAL reader never blocks a writer, so commits keep running while it copies pages. If the WAL still
passes ``wal_hard_limit_pages`` (the background checkpoint cannot keep up, or a long reader pins the WAL),
the writing thread runs a blocking ``TRUNCATE`` checkpoint before it returns: the WAL cannot grow without
bound. ``close()`` waits for (or interrupts) a running checkpoint; the tier then checkpoints with
``TRUNCATE``, so no WAL is left. ``journal_size_limit`` makes SQLite truncate the WAL file when it starts
over, so its size tracks the pages not yet checkpointed (that size is the trigger). Durability is unchanged:
WAL + ``synchronous=NORMAL`` (a committed transaction survives a process crash).

Why a module of its own: this upkeep is one idea (a size trigger, a checkpointer thread, a hard limit) that
``SqliteWarmTier`` only calls at three points -- when it opens the file, after each write transaction on
its writer thread, and when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

logger = logging.getLogger(__name__)

WAL_CHECKPOINT_PAGES = 1000  # background PASSIVE checkpoint past this (SQLite's own autocheckpoint default)
WAL_HARD_LIMIT_PAGES = 4000  # blocking checkpoint inside the write past this (~16 MB)
_WAL_HEADER_BYTES = 32
_WAL_FRAME_HEADER_BYTES = 24


class WalKeeper:
    """The WAL of one SQLite file: its size, the background checkpointer, the hard limit."""

    def __init__(self, path: Path, soft_pages: int, hard_pages: int, timeout_seconds: float) -> None:
        if not 0 < soft_pages <= hard_pages:
            raise ValueError("need 0 < wal_checkpoint_pages <= wal_hard_limit_pages")
        self._path = path
        self._wal_path = path.with_name(path.name + "-wal")
        self._soft_pages = soft_pages
        self._hard_pages = hard_pages
        self._timeout = timeout_seconds
        self._frame_bytes = 4096 + _WAL_FRAME_HEADER_BYTES
        # the checkpointer: its own connection on its own thread, so commits never wait for it
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._running: Future[tuple[int, int, int]] | None = None
        self.checkpoints = 0  # background checkpoints completed
        self.blocking_checkpoints = 0  # hard-limit checkpoints run inside a write

    def configure(self, db: sqlite3.Connection) -> None:
        """On the writer connection when it opens: no automatic checkpoint, and a WAL file that starts over
        small (so its size tracks the pages to checkpoint)."""
        db.execute("PRAGMA wal_autocheckpoint=0")  # never inside a commit: see the module docstring
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        self._frame_bytes = page_size + _WAL_FRAME_HEADER_BYTES
        limit = self._soft_pages * self._frame_bytes // 2
        db.execute(f"PRAGMA journal_size_limit={int(limit)}")

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Open the checkpointer's connection (``connect``) on its own thread."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-sqlite-aux")
        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    def pages(self) -> int:
        """Frames in the WAL file not yet reused (blocking ``stat``: call it from the worker threads)."""
        try:
            size = os.stat(self._wal_path).st_size
        except FileNotFoundError:
            return 0
        return max(0, size - _WAL_HEADER_BYTES) // self._frame_bytes

    def after_write(self, db: sqlite3.Connection) -> int:
        """On the writer thread after a commit: past the hard limit, checkpoint (TRUNCATE) before returning;
        return the WAL's pages."""
        pages = self.pages()
        if pages >= self._hard_pages:
            # the background checkpoint could not keep up (or a reader pins the WAL): block this write
            busy, log, done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            running = self._running
            if busy and running is not None and not running.done():
                # one checkpoint at a time: the background one holds it. Wait for it on this (worker)
                # thread, then truncate, so a slow machine cannot let the WAL outgrow the hard limit.
                with contextlib.suppress(Exception):
                    running.result(timeout=self._timeout)
                busy, log, done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self.blocking_checkpoints += 1
            # routine under sustained back-to-back writes (no gap to start the WAL over); a busy one is not
            (logger.warning if busy else logger.info)(
                "sqlite WAL at %d pages (limit %d): blocking checkpoint, %d/%d frames copied%s",
                pages,
                self._hard_pages,
                done,
                log,
                " (busy: another checkpoint or a reader holds the WAL; retried on the next write)"
                if busy
                else "",
            )
            pages = self.pages()
        return pages

    def written(self, pages: int) -> None:
        """On the event loop once a write's result is handed back: past the soft limit, start a checkpoint."""
        if pages >= self._soft_pages:
            self._start()

    def _start(self) -> None:
        """Start one PASSIVE checkpoint on the checkpointer thread unless one is already running."""
        if self._executor is None or self._db is None:
            return
        if self._running is not None and not self._running.done():
            return
        aux = self._db

        def checkpoint() -> tuple[int, int, int]:
            busy, log, done = aux.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(busy), int(log), int(done)

        future = self._executor.submit(checkpoint)
        future.add_done_callback(self._done)  # runs on the checkpointer thread
        self._running = future

    def _done(self, future: Future[tuple[int, int, int]]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.checkpoints += 1
        elif not (isinstance(exc, sqlite3.OperationalError) and "interrupt" in str(exc)):
            logger.warning("sqlite at %s: background WAL checkpoint failed: %s", self._path, exc)

    async def wait(self) -> None:
        """Wait for a running background checkpoint (tests and benchmarks; writes never need this)."""
        future = self._running
        if future is not None:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Stop the background checkpoint (cancel it, or interrupt it at its next page) and close its
        connection."""
        executor, aux = self._executor, self._db
        future, self._running = self._running, None
        self._executor, self._db = None, None
        if future is not None and not future.cancel():  # already running: stop it at its next page
            if aux is not None:
                aux.interrupt()
            with contextlib.suppress(sqlite3.Error):
                await asyncio.wrap_future(future)
        if executor is not None:
            if aux is not None:
                await asyncio.get_running_loop().run_in_executor(executor, aux.close)
            executor.shutdown(wait=False)
