"""``exhibit users ...``: staff administration without the database (issue 15 item 2).

    exhibit users add EMAIL --role R [--org O] [--name N] [--unit U] [--password-stdin]
    exhibit users list
    exhibit users show | disable | enable | signout | reset-mfa EMAIL
    exhibit users passwd EMAIL [--password-stdin]
    exhibit users set-role EMAIL --role R
    exhibit users set-unit EMAIL --unit U      (--unit "": no unit)

Each takes ``--json``. ``add`` and ``passwd`` read the password from the first line of
standard input when one is piped in (or ``--password-stdin`` insists on it), held to the
policy (``storage.password_policy``); with nothing piped they make a one-time password,
print it once, and the account must replace it at its next sign-in. Either way the output
says which. Every change is a custody event naming ``cli:<os user>``, written in the same
transaction; disable, signout, reset-mfa, passwd and set-role end the account's sessions
at once (the very next request with an old cookie is anonymous, AC-10).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from exhibit.cli import Output, _actor, _open_db
from storage import ledger, users
from storage.errors import Invalid
from storage.models import Organisation, Role, User, utcnow
from storage.settings import Settings

ONE_TIME_NOTE = ("Shown once: give it to its owner through a trusted channel. They must choose their own "
                 "password when they first sign in.")


def _password_from_stdin(args: argparse.Namespace) -> str | None:
    """The password piped in, or None when nothing is (then a one-time one is made). A
    terminal is never read from: an interactive run makes a one-time password rather than
    echo a typed one."""
    stdin = sys.stdin
    if stdin is None or (not args.password_stdin and stdin.isatty()):
        return None
    line = stdin.readline().rstrip("\r\n")
    if line:
        return line
    if args.password_stdin:
        raise Invalid("--password-stdin: no password on standard input", code="ERR_PASSWORD_REQUIRED")
    return None


def _password_note(data: dict[str, Any]) -> str:
    if data["password_source"] == "stdin":  # noqa: S105 - where it came from, not a password
        return "password: the one read from standard input"
    return f"one-time password: {data['one_time_password']}\n{ONE_TIME_NOTE}"


def _describe(user: User, org: str | None, live: int) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "name": user.display_name, "role": str(user.role), "org": org,
            "unit": user.unit, "disabled": user.disabled, "mfa_enrolled": user.mfa_enrolled,
            "has_password": user.password_hash is not None, "must_change_password": user.must_change_password,
            "live_sessions": live, "created_at": ledger.format_time(user.created_at)}


def _org_name(session: Session, user: User) -> str | None:
    org = session.get(Organisation, user.org_id) if user.org_id else None
    return org.name if org is not None else None


def cmd_add(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui.accounts import one_time_password
    from storage.users import add_user

    given = _password_from_stdin(args)
    password = given if given is not None else one_time_password()
    db = _open_db(settings)
    with db.write() as session:
        user = add_user(db, session, args.email, args.role, org_name=args.org, display_name=args.name or "",
                        password=password, unit=args.unit or None, must_change_password=given is None,
                        actor=_actor())
        data = {**_describe(user, args.org, 0), "password_source": "stdin" if given is not None else "one_time"}
    if given is None:
        data["one_time_password"] = password
    out.emit(data, lambda: f"user {data['email']} added ({data['role']}), id {data['id']}\n{_password_note(data)}")
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    db = _open_db(settings)
    with db.read() as session:
        data = [_describe(u, org, live) for u, org, live in users.accounts_with_sessions(session, utcnow())]

    def human() -> str:
        if not data:
            return "no users"
        return "\n".join(
            f"{r['email']:<36} {r['role']:<10} {'DISABLED' if r['disabled'] else 'active':<9} "
            f"unit={r['unit'] or '-':<12} two-step={'yes' if r['mfa_enrolled'] else 'not yet':<8} "
            f"sessions={r['live_sessions']}" + ("  (must change password)" if r["must_change_password"] else "")
            for r in data)

    out.emit(data, human)
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui.accounts import find_user

    db = _open_db(settings)
    with db.read() as session:
        user = find_user(session, email=args.email)
        data = _describe(user, _org_name(session, user), users.live_sessions(session, [user.id], utcnow()).get(user.id, 0))
    out.emit(data, lambda: "\n".join(f"{k:<22}{'-' if v is None else v}" for k, v in data.items()))
    return 0


def _change(settings: Settings, args: argparse.Namespace, out: Output,
            act: Callable[[Any, Session, User, dt.datetime], dict[str, Any]], said: Callable[[dict[str, Any]], str]) -> int:
    """Run ``act`` on the account named by ``args.email`` in one write transaction (the
    change and its custody event commit together, or neither does) and report it."""
    from reviewer_ui.accounts import find_user

    db = _open_db(settings)
    with db.write() as session:
        user = find_user(session, email=args.email)
        result = act(db, session, user, utcnow())
        data = {**_describe(user, _org_name(session, user), 0), **result}
        data.pop("live_sessions")
    out.emit(data, lambda: said(data))
    return 0


def cmd_disable(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    return _change(settings, args, out,
                   lambda db, s, u, now: {"sessions_ended": accounts.disable(db, s, u, actor=_actor(), now=now)},
                   lambda d: f"{d['email']} disabled; {d['sessions_ended']} session(s) ended")


def cmd_enable(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    def act(db: Any, s: Session, u: User, now: dt.datetime) -> dict[str, Any]:
        accounts.enable(db, s, u, actor=_actor())
        return {}

    return _change(settings, args, out, act, lambda d: f"{d['email']} enabled")


def cmd_signout(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    return _change(settings, args, out,
                   lambda db, s, u, now: {"sessions_ended": accounts.sign_out_everywhere(db, s, u, actor=_actor(),
                                                                                         now=now)},
                   lambda d: f"{d['email']} signed out everywhere; {d['sessions_ended']} session(s) ended")


def cmd_reset_mfa(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    return _change(settings, args, out,
                   lambda db, s, u, now: {"sessions_ended": accounts.reset_mfa(db, s, u, actor=_actor(), now=now)},
                   lambda d: f"two-step sign-in reset for {d['email']}: a new authenticator is set up at the next "
                             f"sign-in; {d['sessions_ended']} session(s) ended")


def cmd_passwd(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    given = _password_from_stdin(args)
    password = given if given is not None else accounts.one_time_password()

    def act(db: Any, s: Session, u: User, now: dt.datetime) -> dict[str, Any]:
        ended = accounts.set_password(db, s, u, password, actor=_actor(), now=now, one_time=given is None)
        result: dict[str, Any] = {"sessions_ended": ended, "password_source": "stdin" if given is not None else "one_time"}
        if given is None:
            result["one_time_password"] = password
        return result

    return _change(settings, args, out, act,
                   lambda d: f"password of {d['email']} set; {d['sessions_ended']} session(s) ended\n{_password_note(d)}")


def cmd_set_role(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    def act(db: Any, s: Session, u: User, now: dt.datetime) -> dict[str, Any]:
        before = str(u.role)
        changed = accounts.set_role(db, s, u, args.role, actor=_actor(), now=now)
        return {"changed": changed, "previous_role": before}

    return _change(settings, args, out, act,
                   lambda d: f"{d['email']} is now {d['role']}" + (" (was " + d["previous_role"] + "; sessions ended)"
                                                                  if d["changed"] else " (unchanged)"))


def cmd_set_unit(settings: Settings, args: argparse.Namespace, out: Output) -> int:
    from reviewer_ui import accounts

    def act(db: Any, s: Session, u: User, now: dt.datetime) -> dict[str, Any]:
        before = u.unit
        return {"changed": accounts.set_unit(db, s, u, args.unit, actor=_actor()), "previous_unit": before}

    return _change(settings, args, out, act, lambda d: f"{d['email']} is in unit {d['unit'] or '(none)'}")


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the ``users`` command group to the top-level subparsers ``sub``."""
    roles = [r.value for r in Role]
    group = sub.add_parser("users", help="staff and partner accounts").add_subparsers(dest="sub", required=True)
    p = add(group, "add", cmd_add, "add an account: the password from standard input, or a one-time password "
            "printed once that must be changed at first sign-in")
    p.add_argument("email")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--org", help="organisation (required for partners)")
    p.add_argument("--name", help="full name")
    p.add_argument("--unit", help="the unit the account works in")
    p.add_argument("--password-stdin", action="store_true",
                   help="insist on a password from the first line of stdin (read anyway when one is piped)")
    add(group, "list", cmd_list, "list every account")
    for name, handler, text in (
        ("show", cmd_show, "show one account"),
        ("disable", cmd_disable, "disable an account and end its sessions at once"),
        ("enable", cmd_enable, "enable a disabled account"),
        ("signout", cmd_signout, "end every session of an account at once"),
        ("reset-mfa", cmd_reset_mfa, "reset two-step sign-in: a new authenticator at the next sign-in"),
    ):
        add(group, name, handler, text).add_argument("email")
    p = add(group, "passwd", cmd_passwd, "set an account's password (from stdin, or a one-time one printed once); "
            "its sessions end")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="insist on a password from the first line of stdin")
    p = add(group, "set-role", cmd_set_role, "change an account's role; its sessions end")
    p.add_argument("email")
    p.add_argument("--role", required=True, choices=roles)
    p = add(group, "set-unit", cmd_set_unit, "put an account in a unit (--unit '': none)")
    p.add_argument("email")
    p.add_argument("--unit", required=True)
