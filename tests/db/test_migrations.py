"""Migrations apply in order to an empty database and are not re-applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.database import Database
from db.migrate import load_migrations


async def test_all_migrations_apply_to_an_empty_database(tmp_path: Path) -> None:
    migrations = load_migrations()
    db = Database(tmp_path / "x.db")
    applied = await db.open()
    try:
        assert applied == [m.version for m in migrations]
        rows = await db.fetch_rows("SELECT version, name FROM schema_version ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in migrations]
        tables = {r[0] for r in await db.fetch_rows("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"schema_version", "meta", "organizations", "entities"} <= tables
        assert await db.scalar("PRAGMA journal_mode") == "wal"
        assert await db.scalar("PRAGMA foreign_key_check") is None
    finally:
        await db.close()
    again = Database(tmp_path / "x.db")
    assert await again.open() == []
    await again.close()


async def test_a_failing_migration_rolls_back(tmp_path: Path) -> None:
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);\n")
    (mig / "0002_bad.sql").write_text("CREATE TABLE b (x INTEGER);\nINSERT INTO nope VALUES (1);\n")
    import aiosqlite

    from db.migrate import apply_migrations, current_version

    async with aiosqlite.connect(str(tmp_path / "y.db"), isolation_level=None) as conn:
        with pytest.raises(Exception, match="nope"):
            await apply_migrations(conn, mig)
        assert await current_version(conn) == 1
        names = {r[0] for r in await conn.execute_fetchall("SELECT name FROM sqlite_master")}
        assert "a" in names and "b" not in names


async def test_writes_are_serialized_and_reads_see_them(tmp_path: Path) -> None:
    import asyncio

    db = Database(tmp_path / "z.db")
    await db.open()
    try:
        await asyncio.gather(
            *(db.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (f"k{i}", "v")) for i in range(200))
        )
        assert await db.scalar("SELECT COUNT(*) FROM meta WHERE key LIKE 'k%'") == 200
        assert await db.check_writable() >= 0
    finally:
        await db.close()
