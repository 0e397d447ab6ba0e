"""`exhibit users ...`: staff administration without the database, on SQLite and
PostgreSQL (issue 15 item 2). Each command's --json output and exit code; disabling or
signing out ends a signed-in session at once; every change is a custody event."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewer_ui import mfa
from storage.models import User
from storage.passwords import verify_password
from tests.exhibit.test_cli import Cli
from tests.fixtures.reviewer import ReviewHarness

GOOD = "a kettle on the landing at dawn"


@pytest.fixture
def cli(tmp_path: Path, review: ReviewHarness, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI on the staff app's own (migrated) database."""
    return Cli(tmp_path / "cli-data", review.db.url, monkeypatch)


def _user(review: ReviewHarness, email: str) -> User:
    with review.db.read() as s:
        from sqlmodel import select

        found = s.exec(select(User).where(User.email == email)).first()
        assert found is not None
        return found


def test_add_prints_a_one_time_password_unless_one_is_piped_in_and_says_which(cli: Cli, review: ReviewHarness) -> None:
    made = cli.json("users", "add", "PC.Hart@force.example", "--role", "officer", "--unit", "North")
    assert made["password_source"] == "one_time" and made["must_change_password"] is True
    assert len(made["one_time_password"]) >= 20 and made["unit"] == "North"
    assert verify_password(_user(review, "pc.hart@force.example").password_hash, made["one_time_password"])

    piped = cli.json("users", "add", "sgt.lee@force.example", "--role", "officer", stdin=GOOD + "\n")
    assert piped["password_source"] == "stdin" and piped["must_change_password"] is False
    assert "one_time_password" not in piped
    assert verify_password(_user(review, "sgt.lee@force.example").password_hash, GOOD)

    human = cli.run("users", "add", "dc.ray@force.example", "--role", "auditor")
    assert human.returncode == 0 and "one-time password: " in human.stdout and "must choose" in human.stdout
    human = cli.run("users", "add", "dc.ng@force.example", "--role", "auditor", stdin=GOOD + "\n")
    assert "read from standard input" in human.stdout and "one-time" not in human.stdout

    # The password policy (storage.password_policy) holds for a piped password.
    for weak, code in (("short one", "ERR_PASSWORD_SHORT"), ("qwertyqwerty", "ERR_PASSWORD_COMMON"),
                       ("Sunshine2026!!", "ERR_PASSWORD_COMMON"), ("abcabcabcabcabc", "ERR_PASSWORD_COMMON")):
        refused = cli.json("users", "add", "x@force.example", "--role", "officer", stdin=weak + "\n", code=2)
        assert refused["error"]["code"] == code, weak
    assert cli.json("users", "add", "y@force.example", "--role", "officer", "--password-stdin", code=2)[
        "error"]["code"] == "ERR_PASSWORD_REQUIRED"
    created = [e.detail for e in review.events("user.created")]
    assert [d["one_time_password"] for d in created] == [True, False, True, False]
    assert all(e.actor.startswith("cli") for e in review.events("user.created"))


def test_list_and_show(cli: Cli, review: ReviewHarness) -> None:
    officer = review.make_user("officer", email="pc.one@force.example", unit="South")
    client = review.client()
    review.signed_in_session(client, officer)
    listed = cli.json("users", "list")
    assert [(r["email"], r["role"], r["unit"], r["live_sessions"]) for r in listed] == [
        ("pc.one@force.example", "officer", "South", 1)]
    shown = cli.json("users", "show", "PC.One@force.example")
    assert shown["id"] == officer.user_id and shown["mfa_enrolled"] is True and shown["disabled"] is False
    missing = cli.json("users", "show", "nobody@force.example", code=2)
    assert missing["error"]["code"] == "ERR_USER_NOT_FOUND" and "nobody@force.example" in missing["error"]["message"]


def test_disable_ends_a_signed_in_session_at_once_and_enable_lets_the_account_sign_in(
        cli: Cli, review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.sign_in(client, officer)
    assert client.get("/reports").status_code == 200
    out = cli.json("users", "disable", officer.email)
    assert out["disabled"] is True and out["sessions_ended"] == 1
    after = client.get("/reports")
    assert after.status_code == 303 and after.headers["location"] == "/login"
    assert review.password_step(review.client(ip="192.0.2.11"), officer).status_code == 400  # refused
    assert cli.json("users", "enable", officer.email)["disabled"] is False
    review.sign_in(review.client(ip="192.0.2.12"), officer)
    (disabled,) = review.events("user.disabled")
    assert disabled.actor.startswith("cli") and disabled.detail["sessions_ended"] == 1
    assert len(review.events("user.enabled")) == 1


def test_signout_reset_mfa_set_role_and_set_unit(cli: Cli, review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.signed_in_session(client, officer)
    assert cli.json("users", "signout", officer.email)["sessions_ended"] == 1
    assert client.get("/reports").status_code == 303

    review.signed_in_session(client, officer)
    reset = cli.json("users", "reset-mfa", officer.email)
    assert reset["mfa_enrolled"] is False and reset["sessions_ended"] == 1
    assert review.user(officer).totp_secret is None

    review.signed_in_session(client, officer)
    role = cli.json("users", "set-role", officer.email, "--role", "auditor")
    assert (role["role"], role["previous_role"], role["changed"]) == ("auditor", "officer", True)
    assert client.get("/reports").status_code == 303  # the new role starts with a new sign-in
    assert cli.json("users", "set-role", officer.email, "--role", "auditor")["changed"] is False
    partner = cli.json("users", "set-role", officer.email, "--role", "partner", code=2)
    assert partner["error"]["code"] == "ERR_ORG_REQUIRED"

    unit = cli.json("users", "set-unit", officer.email, "--unit", "Roads Policing")
    assert (unit["unit"], unit["previous_unit"]) == ("Roads Policing", None)
    assert cli.json("users", "set-unit", officer.email, "--unit", "")["unit"] is None
    actions = [e.action for e in review.events() if e.subject == f"user:{officer.user_id}"]
    assert actions == ["user.created", "user.signed_out_everywhere", "user.reset_mfa", "user.role_changed",
                       "user.unit_changed", "user.unit_changed"]
    assert all(e.actor.startswith("cli") for e in review.events() if e.action.startswith("user.") and
               e.action != "user.created")


def test_passwd_sets_a_one_time_or_piped_password_and_ends_sessions(cli: Cli, review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    review.signed_in_session(client, officer)
    one_time = cli.json("users", "passwd", officer.email)
    assert one_time["password_source"] == "one_time" and one_time["must_change_password"] is True
    assert one_time["sessions_ended"] == 1 and client.get("/reports").status_code == 303
    assert verify_password(review.user(officer).password_hash, one_time["one_time_password"])

    piped = cli.json("users", "passwd", officer.email, stdin=GOOD + "\n")
    assert piped["password_source"] == "stdin" and piped["must_change_password"] is False
    assert verify_password(review.user(officer).password_hash, GOOD)
    common = cli.json("users", "passwd", officer.email, stdin="1q2w3e4r5t6y\n", code=2)
    assert common["error"]["code"] == "ERR_PASSWORD_COMMON"
    personal = cli.json("users", "passwd", officer.email, stdin=f"{officer.email} is me\n", code=2)
    assert personal["error"]["code"] == "ERR_PASSWORD_PERSONAL"
    events = review.events("user.reset_password")
    assert [e.detail["one_time"] for e in events] == [True, False]
    assert GOOD not in str([e.detail for e in review.events()])  # never the password itself
    assert one_time["one_time_password"] not in str([e.detail for e in review.events()])


def test_bad_usage_exits_2_from_the_console_script(cli: Cli) -> None:
    proc = cli.run("users", "set-role", "a@force.example", "--role", "superuser", real=True)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    unknown = cli.run("users", "disable", "nobody@force.example", real=True)
    assert unknown.returncode == 2 and "no user nobody@force.example" in unknown.stdout


def test_a_reset_mfa_account_enrols_again(cli: Cli, review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    cli.json("users", "reset-mfa", officer.email)
    officer.totp_secret = None
    review.sign_in(review.client(), officer)  # enrols a new authenticator through the real pages
    assert review.user(officer).mfa_enrolled and officer.totp_secret
    assert mfa.unseal(review.secret, review.user(officer).totp_secret or "", officer.user_id) == officer.totp_secret
