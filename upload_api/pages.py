"""The citizen pages (owned by the pages engineer): stub until they land."""

from __future__ import annotations

from starlette.routing import BaseRoute

from upload_api.context import UploadContext


def routes(ctx: UploadContext) -> list[BaseRoute]:
    return []
