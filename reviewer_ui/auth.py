"""Sign-in, TOTP, sign-out (being written)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from reviewer_ui.context import ReviewContext


def routes(ctx: ReviewContext) -> list[BaseRoute]:
    return []
