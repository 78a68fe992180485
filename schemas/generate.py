"""Write the JSON Schema of every event and an AsyncAPI 3.0 document of the topics into `schemas/generated/`.

Clients in other languages build against these files, so they are generated from the pydantic models and
committed; `python -m schemas.generate --check` (and the drift test) fails when they no longer match.
Pure Python and deterministic: sorted keys, a tiny YAML writer with every string double-quoted.
"""

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from schemas.events import ALL_EVENTS, BatchRowRejected, BatchSyncCompleted, BatchSyncRequested, Event
from schemas.signing import SIGNATURE_HEADER
from schemas.topics import DEFAULT_PREFIX, Topics

GENERATED = Path(__file__).parent / "generated"
ASYNCAPI_FILE = "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING = "0.5.0"
REPLY_MESSAGE = "BatchSyncReply"
"""The reply channel's message: a BatchSyncCompleted keyed by the request's correlationId."""
PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$-]*$")


def schema_file(event: type[Event]) -> str:
    return f"{event.__name__}.schema.json"


def event_schema(event: type[Event]) -> dict[str, Any]:
    """What we accept on the wire (validation mode, camelCase aliases); readers must ignore unknown fields."""
    schema = event.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_file(event), **schema}


def _key(key: str) -> str:
    return key if PLAIN_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML for dicts, lists and scalars; JSON-quoted strings are valid YAML double-quoted scalars."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_key(key)}:")
                lines += to_yaml(item, indent + 2)
            else:
                lines.append(f"{pad}{_key(key)}: {_flow_empty(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_flow_empty(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def _flow_empty(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _message(event: type[Event], key_doc: str) -> dict[str, Any]:
    return {
        "name": event.__name__,
        "title": event.__name__,
        "summary": (event.__doc__ or event.__name__).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/EventHeaders"},
        "payload": {"$ref": f"./{schema_file(event)}"},
        "bindings": {"kafka": {"key": {"type": "string", "description": key_doc}, "bindingVersion": KAFKA_BINDING}},
    }


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _channel(address: str, description: str, messages: Iterable[str], retention: str | None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": address,
        "description": description,
        "messages": {name: _ref("components", "messages", name) for name in messages},
    }
    if retention is not None:
        channel["bindings"] = {"kafka": {"topicConfiguration": {"retention.ms": int(retention)},
                                         "bindingVersion": KAFKA_BINDING}}
    return channel


def asyncapi(events: tuple[type[Event], ...] = ALL_EVENTS, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The four topics (`BATCHSYNC_TOPIC_PREFIX` at its default), their messages and who sends or receives."""
    by_name = {event.__name__: event for event in events}
    topics = Topics(prefix)
    request, reply = BatchSyncRequested.__name__, BatchSyncCompleted.__name__
    rejected = BatchRowRejected.__name__
    lifecycle = [name for name in by_name if name not in (request, rejected)]
    messages = {name: _message(event, "batchId, as a decimal string") for name, event in by_name.items()}
    messages[REPLY_MESSAGE] = {
        **_message(by_name[reply], "correlationId of the request"),
        "name": REPLY_MESSAGE,
        "title": f"{reply}, as a reply",
    }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "A message that could not be processed",
        "summary": "The original bytes and key, unchanged; the reason and origin are in the headers.",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "the original message value, byte for byte"},
        "bindings": {"kafka": {"key": {"type": "string", "description": "the original key"},
                               "bindingVersion": KAFKA_BINDING}},
    }
    header = {"type": "string"}
    signature = {"type": "string", "pattern": "^[0-9a-f]{64}$",
                 "description": "Set by batchsync on every record it writes: hex HMAC-SHA256 (keyed from "
                                "BATCHSYNC_SECRET_KEY) over the topic, key and value, framed as in "
                                "schemas/signing.py. The projector and audit replay refuse events without a "
                                "valid one; requests from other services need none."}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "batchsync events",
            "version": "1",
            "description": "Sync requests, lifecycle events (the audit log) and replies of batchsync. Topic "
                           f"names use the default prefix `{prefix}` (BATCHSYNC_TOPIC_PREFIX). Every event is "
                           "UTF-8 JSON with schemaVersion 1; readers ignore unknown fields.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "requested": _channel(topics.requested, "Requests to run a batch, keyed by batchId. Retention: "
                                  "BATCHSYNC_REQUESTS_RETENTION_MS.", [request], None),
            "events": _channel(topics.events, "Every lifecycle event of every run, keyed by batchId: the audit "
                               "log, never deleted.", lifecycle, "-1"),
            "replies": _channel(topics.replies, "Outcomes for requesters that named this topic in replyTo, keyed "
                                "by correlationId. Retention: BATCHSYNC_REPLIES_RETENTION_MS.",
                                [REPLY_MESSAGE], None),
            "dlq": _channel(topics.dlq, "Messages that could not be parsed, validated or processed. Retention: "
                            "BATCHSYNC_DLQ_RETENTION_MS.", ["DeadLetter"], None),
            "rejected": _channel(topics.rejected, "Rows runs set aside under their errorLimit, keyed by batchId. "
                                 "Retention: BATCHSYNC_DLQ_RETENTION_MS.", [rejected], None),
        },
        "operations": {
            "requestSync": {
                "action": "send",
                "channel": _ref("channels", "requested"),
                "summary": "Ask for a run; the outcome arrives on the replyTo topic (or none).",
                "messages": [_ref("channels", "requested", "messages", request)],
                "reply": {"channel": _ref("channels", "replies"),
                          "messages": [_ref("channels", "replies", "messages", REPLY_MESSAGE)]},
            },
            "runRequests": {
                "action": "receive",
                "channel": _ref("channels", "requested"),
                "summary": f"Sync workers (consumer group {prefix}.worker) run the requested batches.",
                "messages": [_ref("channels", "requested", "messages", request)],
            },
            "publishLifecycle": {
                "action": "send",
                "channel": _ref("channels", "events"),
                "summary": "Workers tell each run's start, progress and completion.",
                "messages": [_ref("channels", "events", "messages", name) for name in lifecycle],
            },
            "projectHistory": {
                "action": "receive",
                "channel": _ref("channels", "events"),
                "summary": f"The history projector (group {prefix}.projector) and audit replay read the log.",
                "messages": [_ref("channels", "events", "messages", name) for name in lifecycle],
            },
            "receiveReplies": {
                "action": "receive",
                "channel": _ref("channels", "replies"),
                "summary": "The HTTP service resolves its waiting requests by correlationId.",
                "messages": [_ref("channels", "replies", "messages", REPLY_MESSAGE)],
            },
            "rejectRows": {
                "action": "send",
                "channel": _ref("channels", "rejected"),
                "summary": "Workers tell each row a run set aside under its errorLimit, with the reason.",
                "messages": [_ref("channels", "rejected", "messages", rejected)],
            },
            "parkUnprocessable": {
                "action": "send",
                "channel": _ref("channels", "dlq"),
                "summary": "A consumer parks what it cannot process and goes on.",
                "messages": [_ref("channels", "dlq", "messages", "DeadLetter")],
            },
        },
        "components": {
            "messages": messages,
            "schemas": {
                "EventHeaders": {
                    "type": "object",
                    "description": "Kafka record headers (UTF-8 strings) copied from the event for routing "
                                   "without parsing the body.",
                    "properties": {"eventType": header, "schemaVersion": header, "correlationId": header,
                                   "eventId": header, SIGNATURE_HEADER: signature},
                },
                "DeadLetterHeaders": {
                    "type": "object",
                    "description": "The original headers plus where the message came from and why it was parked.",
                    "properties": {"dlqReason": header, "dlqSourceTopic": header, "dlqSourcePartition": header,
                                   "dlqSourceOffset": header, SIGNATURE_HEADER: signature,
                                   "dlqSourceSignature": {**header, "description": "the original's signature "
                                                          "header, if it had one (the copy is signed anew)"}},
                    "required": ["dlqReason", "dlqSourceTopic", "dlqSourcePartition", "dlqSourceOffset"],
                },
            },
        },
    }


def render(events: tuple[type[Event], ...] = ALL_EVENTS, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """File name → exact text of every generated file."""
    files = {schema_file(e): json.dumps(event_schema(e), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
             for e in events}
    header = "# Generated by `python -m schemas.generate` from schemas/events.py; do not edit.\n"
    files[ASYNCAPI_FILE] = header + "\n".join(to_yaml(asyncapi(events, prefix))) + "\n"
    return files


def drift(directory: Path, files: dict[str, str]) -> list[str]:
    """Names of files that differ, are missing, or are left over from an event that no longer exists."""
    present = {p.name for p in directory.glob("*.schema.json")} | (
        {ASYNCAPI_FILE} if (directory / ASYNCAPI_FILE).exists() else set())
    changed = [name for name, text in files.items()
               if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != text]
    return sorted(set(changed) | (present - set(files)))


def write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in set(p.name for p in directory.glob("*.schema.json")) - set(files):
        (directory / stale).unlink()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ from the models")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        changed = drift(GENERATED, files)
        for name in changed:
            print(f"drift: schemas/generated/{name}", file=sys.stderr)
        return 1 if changed else 0
    write(GENERATED, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
