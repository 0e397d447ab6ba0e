"""i15: the admin page changes a role through ``reviewer_ui.accounts.set_role``, the one
function the CLI uses, so it refuses what the CLI refuses: a staff role for a member of a
partner organisation, and a partner role for a member of the force's own organisation
(ERR_ORG_KIND_MISMATCH; a share to a partner organisation reaches every member of it)."""

from __future__ import annotations

from storage.models import Organisation
from tests.fixtures.reviewer import ReviewHarness, csrf_of


def test_a_partner_account_is_not_given_a_staff_role_nor_the_reverse(review: ReviewHarness) -> None:
    admin = review.make_user("admin")
    client = review.client()
    review.signed_in_session(client, admin)
    partner = review.make_user("partner", org="Prosecutors")
    officer = review.make_user("officer", org="Northshire Police")
    with review.db.read() as s:
        org = s.get(Organisation, review.user(officer).org_id)
        assert org is not None and not org.is_partner
    token = csrf_of(client.get("/admin/users").text)
    for target, role in ((partner, "officer"), (partner, "admin"), (officer, "partner")):
        r = client.post(f"/admin/users/{target.user_id}/role", data={"role": role, "csrf_token": token})
        assert r.status_code == 400, (target.email, role)
        assert "cannot belong to it" in r.text
    assert review.user(partner).role == "partner" and review.user(officer).role == "officer"
    assert review.events("user.role_changed") == []
    # A change the organisation allows goes through the same function and is recorded once.
    r = client.post(f"/admin/users/{officer.user_id}/role", data={"role": "supervisor", "csrf_token": token})
    assert r.status_code == 303 and review.user(officer).role == "supervisor"
    [event] = review.events("user.role_changed")
    assert event.actor == admin.email and event.detail is not None
    assert (event.detail["email"], event.detail["from"], event.detail["to"]) == (officer.email, "officer", "supervisor")
