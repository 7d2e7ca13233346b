"""``overwatch user …`` and ``overwatch apikey …``: admin tasks on the local database.

They open the same SQLite file as the server (WAL allows both at once) and record
every change in the audit log as done by ``cli`` from ``local``. A running server
picks up API key changes for its NATS users within a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from app.datadir import StartupError, ensure_data_dir, load_or_create_secret
from core.errors import AppError
from core.settings import Settings
from db import users as users_db
from db.database import Database, DatabaseError
from services.audit import CLI, AuditService
from services.auth.apikeys import ROLE_SCOPES, SCOPES, ApiKeyService
from services.auth.users import UserService

ACTOR = "cli"


def add_user_arguments(p: argparse.ArgumentParser) -> None:
    """Subcommands of ``overwatch user``."""
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create an account (prints a generated password)")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    create.add_argument("--org", action="append", default=[], help="organisation membership (repeatable)")
    create.add_argument("--name", default="")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for name, text in (
        ("reset-password", "set a new password (generated unless --password-stdin)"),
        ("disable", "disable an account and end its sessions"),
        ("enable", "enable an account"),
        ("unlock", "clear a sign-in lockout"),
        ("delete", "delete an account"),
    ):
        q = sub.add_parser(name, help=text)
        q.add_argument("--email", required=True)
        if name == "reset-password":
            q.add_argument("--password-stdin", action="store_true")
    sub.add_parser("list", help="list accounts")


def add_apikey_arguments(p: argparse.ArgumentParser) -> None:
    """Subcommands of ``overwatch apikey``."""
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=list(ROLE_SCOPES), help="viewer=read, operator=+commands, admin=+admin")
    create.add_argument("--scope", action="append", choices=list(SCOPES), help="explicit scope (repeatable)")
    create.add_argument("--org", default=None, help="limit the key to one organisation")
    create.add_argument(
        "--nats",
        action="store_true",
        help="also issue NATS credentials: a reader's for a viewer key (all organisations or --org), else a device's",
    )
    create.add_argument(
        "--nats-kind", choices=["device", "reader"], default=None, help="override which NATS credentials --nats issues"
    )
    create.add_argument("--expires-days", type=float, default=None)
    lst = sub.add_parser("list", help="list keys")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("--id", required=True, dest="key_id")


async def _with_services(
    settings: Settings, job: Callable[[UserService, ApiKeyService, Database], Awaitable[int]]
) -> int:
    try:
        ensure_data_dir(settings.data_path)
        secret = load_or_create_secret(settings)
    except (StartupError, OSError) as exc:
        print(f"overwatch: error: {exc}", file=sys.stderr)
        return 1
    db = Database(settings.db_path, readers=1)
    try:
        await db.open()
    except DatabaseError as exc:
        print(f"overwatch: error: {exc}", file=sys.stderr)
        return 1
    try:
        audit = AuditService(db)
        return await job(UserService(db, audit, settings), ApiKeyService(db, audit, secret), db)
    except AppError as exc:
        print(f"overwatch: error: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        await db.close()


def org_list(role: str, org_ids: list[str]) -> str:
    """Organisations as ``user list`` prints them: ``*`` for admins (every organisation), ``-`` for none."""
    if role == "admin":
        return "*"
    return ",".join(sorted(org_ids)) or "-"


def _password(from_stdin: bool) -> str | None:
    return sys.stdin.readline().rstrip("\n") if from_stdin else None


def run_user(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of ``overwatch user``."""

    async def job(users: UserService, _keys: ApiKeyService, db: Database) -> int:
        if args.action == "list":
            for u in await users.list_all():
                flags = " ".join(f for f, on in (("disabled", u.disabled), ("locked", u.locked)) if on)
                print(f"{u.email:32} {u.role:9} orgs={org_list(u.role, u.org_ids)} {flags}".rstrip())
            return 0
        if args.action == "create":
            given = _password(args.password_stdin)
            from services.auth.passwords import generate_password

            password = given or generate_password()
            view = await users.create(ACTOR, args.email, args.role, args.org, password, args.name, CLI)
            print(f"created {view.email} ({view.role})")
            if not given:
                print(f"password: {password}")
            return 0
        row = await users_db.get_user_by_email(db, args.email)
        if row is None:
            print(f"overwatch: error: no user with email {args.email}", file=sys.stderr)
            return 2
        if args.action == "reset-password":
            password = await users.reset_password(ACTOR, row.user_id, _password(args.password_stdin), CLI)
            print(f"password reset for {row.email}" + ("" if args.password_stdin else f": {password}"))
        elif args.action in ("disable", "enable"):
            await users.update(ACTOR, row.user_id, disabled=args.action == "disable", origin=CLI)
            if args.action == "disable":
                from services.auth.sessions import SessionService

                await SessionService(db, settings, "").revoke_all(row.user_id)
            print(f"{args.action}d {row.email}")
        elif args.action == "unlock":
            await users.unlock(ACTOR, row.user_id, CLI)
            print(f"unlocked {row.email}")
        elif args.action == "delete":
            await users.delete(ACTOR, row.user_id, CLI)
            print(f"deleted {row.email}")
        return 0

    return asyncio.run(_with_services(settings, job))


def run_apikey(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of ``overwatch apikey``."""

    async def job(_users: UserService, keys: ApiKeyService, _db: Database) -> int:
        if args.action == "list":
            for k in await keys.list_keys(include_revoked=args.all):
                state = "revoked" if k.revoked_at else "active"
                print(
                    f"{k.key_id}  {k.prefix}…  {k.name:20} {','.join(k.scopes):22} org={k.org_id or '*'} "
                    f"nats={k.nats_kind if k.nats else 'no'} {state} last_used={k.last_used_at or 'never'}"
                )
            return 0
        if args.action == "revoke":
            view = await keys.revoke(ACTOR, args.key_id, CLI)
            print(f"revoked {view.name} ({view.key_id})")
            return 0
        scopes = args.scope or ROLE_SCOPES.get(args.role or "", [])
        if not scopes:
            print("overwatch: error: give --role or --scope", file=sys.stderr)
            return 2
        # A read-only key's NATS credentials are an integrator's (a reader); any other key's a device's.
        kind = args.nats_kind or ("reader" if scopes == ["read"] else "device")
        new = await keys.create(ACTOR, args.name, scopes, args.org, args.expires_days, args.nats, CLI, kind)
        print(f"key_id:  {new.key_id}")
        print(f"api key: {new.key}")
        if new.nats_seed:
            scope = f"organisation {new.org_id}" if new.org_id else "every organisation"
            print(f"nats credentials:        {new.nats_kind} ({scope})")
            print(f"nats user (public nkey): {new.nats_user}")
            print(f"nats seed (keep secret): {new.nats_seed}")
            print(f"nats inbox prefix:       _INBOX.{new.key_id.replace('-', '')}")
        print("These secrets are shown once.")
        return 0

    return asyncio.run(_with_services(settings, job))
