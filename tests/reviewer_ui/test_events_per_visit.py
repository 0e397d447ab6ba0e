"""i15 item 4: events that mean what they say. One ``item.viewed`` per visit (the
redirect after a triage, note, tag or share is that change's answer, with a success
message, not another view), and ``media.stream`` only when a video's playback starts:
never for the page load, once per visit for the play."""

from __future__ import annotations

from tests.fixtures.casework import Casework


def test_a_note_tag_and_triage_add_no_page_views_and_say_they_worked(casework: Casework) -> None:
    officer = casework.user("officer")
    item = casework.item(casework.report(officer)).item
    client = casework.client(officer)
    assert client.get(f"/items/{item.id}").status_code == 200
    for path, data, message in (
        ("notes", {"body": "Plate visible at 0:03."}, "Note added."),
        ("tags", {"tag": "plate"}, "Tag added: plate."),
        ("triage", {"decision": "accepted", "reason": "Shows the junction."}, "Decision recorded: accepted."),
    ):
        r = client.post(f"/items/{item.id}/{path}", data)
        assert r.status_code == 303 and r.headers["location"].startswith(f"/items/{item.id}#")
        landed = client.get(r.headers["location"])
        assert landed.status_code == 200
        assert message in landed.text and 'role="status"' in landed.text
    assert len(casework.events("item.viewed", item.id)) == 1
    # The message is shown once; the next GET is a new visit, with its own event.
    again = client.get(f"/items/{item.id}")
    assert "Note added." not in again.text and "Decision recorded" not in again.text
    assert len(casework.events("item.viewed", item.id)) == 2


def test_the_mark_is_per_session_and_cannot_be_forged_in_the_url(casework: Casework) -> None:
    officer = casework.user("officer")
    item = casework.item(casework.report(officer)).item
    one, two = casework.client(officer), casework.client(officer)
    assert one.post(f"/items/{item.id}/notes", {"body": "First."}).status_code == 303
    # Another session of the same officer landing on the page is a view.
    two.get(f"/items/{item.id}#notes")
    two.get(f"/items/{item.id}?done=1#notes")
    assert len(casework.events("item.viewed", item.id)) == 2
    one.get(f"/items/{item.id}#notes")
    assert len(casework.events("item.viewed", item.id)) == 2


def test_a_refused_form_is_still_a_view(casework: Casework) -> None:
    """A failed change writes no event of its own, so the page it shows is audited."""
    officer = casework.user("officer")
    item = casework.item(casework.report(officer)).item
    client = casework.client(officer)
    assert client.post(f"/items/{item.id}/notes", {"body": ""}).status_code == 400
    assert len(casework.events("item.viewed", item.id)) == 1


def test_a_video_page_load_is_no_stream_and_each_visits_play_is_one(casework_video: Casework) -> None:
    officer = casework_video.user("officer")
    item = casework_video.item(casework_video.report(officer), media="video").item
    client = casework_video.client(officer)
    html = client.get(f"/items/{item.id}").text
    # No evidence bytes before play: the poster shows until then.
    assert 'preload="none"' in html and 'preload="metadata"' not in html
    client.get(f"/items/{item.id}/media/poster")
    assert casework_video.events("media.stream", item.id) == []
    client.get(f"/items/{item.id}/media/proxy", headers={"Range": "bytes=0-"})
    client.get(f"/items/{item.id}/media/proxy", headers={"Range": "bytes=100-"})
    assert len(casework_video.events("media.stream", item.id)) == 1
    # A new visit's play is a new stream start; a note's redirect is not a new visit.
    assert client.post(f"/items/{item.id}/notes", {"body": "Watched."}).status_code == 303
    client.get(f"/items/{item.id}")
    client.get(f"/items/{item.id}/media/proxy", headers={"Range": "bytes=0-"})
    assert len(casework_video.events("media.stream", item.id)) == 1
    client.get(f"/items/{item.id}")
    client.get(f"/items/{item.id}/media/proxy", headers={"Range": "bytes=0-"})
    assert len(casework_video.events("media.stream", item.id)) == 2


def test_a_photo_page_view_covers_the_photo_it_shows(casework: Casework) -> None:
    officer = casework.user("officer")
    item = casework.item(casework.report(officer)).item
    client = casework.client(officer)
    client.get(f"/items/{item.id}")
    assert client.get(f"/items/{item.id}/media/preview").status_code == 200
    assert casework.events("media.stream", item.id) == []
    assert len(casework.events("item.viewed", item.id)) == 1
