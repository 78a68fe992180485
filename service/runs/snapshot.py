"""Run identity and the batch configuration a run used.

`runId = uuid5(requestId)`: the API knows the run id before any worker sees the request, and a
redelivered request maps to the same run, so idempotency is a primary key.
The config snapshot (and its hash) is stored on the run, so a resumed run uses the settings it
started with and an auditor can tell what was synced with which settings.
"""

import hashlib
import json
import uuid
from typing import Any

from service.db.models import Batch

RUN_NAMESPACE = uuid.UUID("6b0e8c1e-4a52-4c1f-9d0e-5a7f1c3b2d90")


def run_id_for(request_id: str) -> uuid.UUID:
    return uuid.uuid5(RUN_NAMESPACE, request_id)


def config_snapshot(batch: Batch) -> dict[str, Any]:
    return {
        "batchId": batch.id,
        "configVersion": batch.config_version,
        "sourceConnectionId": batch.source_connection_id,
        "source": batch.source,
        "targetConnectionId": batch.target_connection_id,
        "target": batch.target,
        "mapping": batch.mapping,
        "chunkSize": batch.chunk_size,
        **({"errorLimit": batch.error_limit} if batch.error_limit else {}),
        **({"split": batch.split} if batch.split else {}),
    }


def config_hash(snapshot: dict[str, Any]) -> str:
    canonical = json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
