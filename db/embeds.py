"""Public embeds: which ``/embed/...`` pages need no sign-in."""

from __future__ import annotations

from db.database import Database


async def is_public(db: Database, kind: str, target: str) -> bool:
    """True when an admin made this embed public."""
    return bool(await db.scalar("SELECT 1 FROM public_embeds WHERE kind = ? AND target = ?", (kind, target)))


async def set_public(db: Database, kind: str, target: str, public: bool, by: str, when: str) -> bool:
    """Make an embed public or private; True when something changed."""
    if public:
        return (
            await db.execute(
                "INSERT OR IGNORE INTO public_embeds(kind, target, created_by, created_at) VALUES (?, ?, ?, ?)",
                (kind, target, by, when),
            )
            > 0
        )
    return await db.execute("DELETE FROM public_embeds WHERE kind = ? AND target = ?", (kind, target)) > 0


async def list_public(db: Database) -> list[tuple[str, str]]:
    """Every public embed."""
    return [(r[0], r[1]) for r in await db.fetch_rows("SELECT kind, target FROM public_embeds ORDER BY kind, target")]
