"""Reports, links, submissions, evidence, the viewer and sharing (owned by casework)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from reviewer_ui.context import ReviewContext


def routes(ctx: ReviewContext) -> list[BaseRoute]:
    return []
