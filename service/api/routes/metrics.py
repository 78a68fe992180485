"""`GET /metrics`: the Prometheus text of this process, open like `/healthz` (docs/operations.md).

Open because scrapers carry no token; safe because no label holds an id, a user, a path a client chose or
a secret (service/observability/metrics.py). Left out of the OpenAPI document: it is no API of ours.
"""

from fastapi import APIRouter
from fastapi.responses import Response

from service.observability.metrics import exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
