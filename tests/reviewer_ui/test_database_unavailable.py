"""The staff door while the database is away (PostgreSQL restarting, a fail-over): a
sign-in attempt gets a plain 503 with Retry-After and no driver words, not "something went
wrong"; once the database is back the same sign-in works."""

from __future__ import annotations

import pytest

from tests.fixtures.reviewer import ReviewHarness, csrf_of
from tests.upload_api.test_database_unavailable import database_refusing_connections


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_signing_in_while_the_database_is_away_says_try_again(review: ReviewHarness) -> None:
    officer = review.make_user("officer")
    client = review.client()
    token = csrf_of(client.get("/login").text)
    form = {"email": officer.email, "password": officer.password, "csrf_token": token}
    with database_refusing_connections(review.db):
        r = client.post("/login", data=form)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.text == "Exhibit is busy or briefly unavailable. Try again in a few seconds."
    r = client.post("/login", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/mfa"
