"""SQLite access: one serialized writer connection and a small pool of read connections.

All writes go through ``Database.write`` (an ``asyncio.Lock`` around one aiosqlite
connection, each call one ``BEGIN IMMEDIATE`` transaction), so there is never a
"database is locked" race between writers. Reads use separate read-only connections,
which WAL lets run while a write is in progress.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import msgspec

from db.migrate import apply_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class DatabaseError(Exception):
    """The database file cannot be opened or written."""


def private_files(path: Path) -> None:
    """Make the database file and its ``-wal``/``-shm`` companions readable by their owner only."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s is readable by others and not ours to chmod 600", file)


class Database:
    """The process's SQLite database (WAL, one writer, ``readers`` read connections)."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self._reader_count = max(1, readers)
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader: itertools.cycle[aiosqlite.Connection] | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> list[int]:
        """Open the connections and apply pending migrations; return the versions applied."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created private before SQLite opens it: SQLite gives -wal and -shm the
            # database file's permissions, so those come out 0600 too.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._writer = await aiosqlite.connect(str(self.path), isolation_level=None)
            await self._writer.execute("PRAGMA journal_mode=WAL")
            await self._pragmas(self._writer)
            applied = await apply_migrations(self._writer)
            private_files(self.path)
            for _ in range(self._reader_count):
                conn = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
                await self._pragmas(conn)
                self._readers.append(conn)
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from None
        self._next_reader = itertools.cycle(self._readers)
        return applied

    @staticmethod
    async def _pragmas(conn: aiosqlite.Connection) -> None:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")

    async def close(self) -> None:
        """Close every connection (idempotent)."""
        for conn in [*self._readers, *([self._writer] if self._writer else [])]:
            try:
                await conn.close()
            except Exception:
                log.exception("closing sqlite connection failed")
        self._readers.clear()
        self._writer = None

    @property
    def is_open(self) -> bool:
        """True between ``open`` and ``close``."""
        return self._writer is not None

    async def write(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on the single writer."""
        if self._writer is None:
            raise DatabaseError("database is closed")
        async with self._lock:
            conn = self._writer
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
            return result

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Execute one write statement; return the number of rows changed."""

        async def run(conn: aiosqlite.Connection) -> int:
            cur = await conn.execute(sql, params)
            return cur.rowcount

        return await self.write(run)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Execute one write statement for many parameter rows in one transaction."""

        async def run(conn: aiosqlite.Connection) -> None:
            await conn.executemany(sql, rows)

        await self.write(run)

    def _reader(self) -> aiosqlite.Connection:
        if self._next_reader is None:
            raise DatabaseError("database is closed")
        return next(self._next_reader)

    async def fetch_rows(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run a read query on a reader connection."""
        rows = await self._reader().execute_fetchall(sql, params)
        return list(rows)

    async def fetch_all(self, type_: type[T], sql: str, params: Params = ()) -> list[T]:
        """Run a read query and convert each row to the msgspec Struct ``type_``."""
        rows = await self.fetch_rows(sql, params)
        return [msgspec.convert(dict(row), type_, strict=False) for row in rows]

    async def fetch_one(self, type_: type[T], sql: str, params: Params = ()) -> T | None:
        """Like ``fetch_all`` but return the first row or ``None``."""
        rows = await self.fetch_all(type_, sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        """Return the first column of the first row (or ``None``)."""
        rows = await self.fetch_rows(sql, params)
        return rows[0][0] if rows else None

    async def check_writable(self) -> float:
        """Write a heartbeat row; return how long it took in seconds (for ``/health/ready``)."""
        started = time.perf_counter()
        await self.execute(
            "INSERT INTO meta(key, value) VALUES('health_probe', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(time.time()),),
        )
        return time.perf_counter() - started
