"""`exhibit serve --demo` (what `make run` starts): a first admin, a demo officer who owns the
demo report (so it is in their "My reports", issue 15 item 1), and a fresh upload link, so a
new install can be tried at once.

The passwords are random and printed once, when each account is created; they are never
stored in clear or logged. MFA is enrolled at the first sign-in. The demo link is new at each
start (a token is shown only when it is issued).
"""

from __future__ import annotations

import secrets

from sqlmodel import col, select

from storage import assignments, ledger
from storage.db import Database
from storage.links import create_link
from storage.models import Report, Role, User
from storage.reports import create_report
from storage.settings import Settings
from storage.users import add_user

DEMO_ADMIN = "admin@exhibit.example"
DEMO_OFFICER = "officer@exhibit.example"
DEMO_UNIT = "Demo unit"
DEMO_REPORT = "DEMO-0001"


def ensure_demo(settings: Settings, db: Database) -> dict[str, str]:
    shown: dict[str, str] = {}
    with db.write() as session:
        has_admin = session.exec(select(User.id).where(col(User.role) == Role.ADMIN)).first()
        if has_admin is None:
            password = secrets.token_urlsafe(15)
            add_user(db, session, DEMO_ADMIN, Role.ADMIN, display_name="Demo Admin", password=password,
                     actor="exhibit:demo")
            shown["admin_email"] = DEMO_ADMIN
            shown["admin_password"] = password
        officer = session.exec(select(User).where(col(User.email) == DEMO_OFFICER)).first()
        if officer is None:
            password = secrets.token_urlsafe(15)
            officer = add_user(db, session, DEMO_OFFICER, Role.OFFICER, display_name="Demo Officer",
                               password=password, unit=DEMO_UNIT, actor="exhibit:demo")
            shown["officer_email"] = DEMO_OFFICER
            shown["officer_password"] = password
        report = session.exec(select(Report).where(col(Report.reference) == DEMO_REPORT)).first()
        if report is None:
            report = create_report(db, session, DEMO_REPORT, "rtc", title="Demo: collision on the A38",
                                   owner_id=officer.id, unit=DEMO_UNIT, actor="exhibit:demo")
        elif report.owner_id is None and not officer.disabled and officer.role in assignments.ASSIGNABLE_ROLES:
            # A demo report made before reports had owners: give it to the demo officer.
            assignments.assign(db, session, report, officer, as_owner=True, actor="exhibit:demo")
        issued = create_link(db, session, report, public_url=settings.public_url,
                             expires_in_seconds=settings.link_default_expiry_seconds,
                             max_files=settings.link_max_files, max_bytes=settings.link_max_bytes,
                             actor="exhibit:demo")
        shown["upload_link"] = issued.url
        shown["link_expires_at"] = ledger.format_time(issued.link.expires_at)
    lines = ["", "=" * 72, "Exhibit demo", ""]
    lines.append(f"  Reviewer UI   http://{settings.staff_host}:{settings.staff_port}/   (staff door)")
    lines.append(f"  Public door   {settings.public_url}/u/…   (citizens' upload pages, intake API)")
    if "admin_password" in shown:
        lines.append(f"  Admin         {shown['admin_email']}")
        lines.append(f"  Password      {shown['admin_password']}   (shown once: note it now)")
        lines.append("                You will set up an authenticator app at first sign-in.")
    else:
        lines.append("  Admin         already created (its password was shown on the first start)")
    if "officer_password" in shown:
        lines.append(f"  Officer       {shown['officer_email']}   (owns {DEMO_REPORT}: it is in their My reports)")
        lines.append(f"  Its password  {shown['officer_password']}   (shown once)")
    lines.append(f"  Upload link   {shown['upload_link']}")
    lines.append(f"                for report {DEMO_REPORT}, expires {shown['link_expires_at']}")
    lines += ["=" * 72, ""]
    print("\n".join(lines), flush=True)
    return shown
