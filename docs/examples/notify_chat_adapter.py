"""A small adapter between batchsync's run notifications and a chat webhook (WeCom, DingTalk, Slack).

batchsync POSTs a run's `BatchSyncCompleted` JSON, signed in `X-Batchsync-Signature: sha256=<hex HMAC-SHA256 of
the body keyed by BATCHSYNC_SECRET_KEY>`. Chat webhooks want their own message shape, so point the batch's
`notify.url` (or BATCHSYNC_NOTIFY_URL) at this adapter; it checks the signature on the exact bytes received,
turns the event into one line of text and posts it to the chat:

    BATCHSYNC_SECRET_KEY=... CHAT_KIND=wecom \
    CHAT_WEBHOOK_URL='https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...' \
    python docs/examples/notify_chat_adapter.py 8099

CHAT_KIND is `wecom`, `dingtalk` or `slack`. Standard library only; run it next to batchsync.
"""

import hashlib
import hmac
import json
import os
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(body: bytes, key: str, header: str | None) -> bool:
    """True when `header` is batchsync's signature of `body`: compare in constant time, never parse first."""
    expected = "sha256=" + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header.strip())


def text_of(event: dict[str, Any]) -> str:
    """One line an on-call engineer can act on."""
    if event.get("success"):
        outcome = "SUCCESS"
    elif event.get("errorCode") == "CANCELLED":
        outcome = "CANCELLED"
    else:
        outcome = f"FAILED ({event.get('errorCode')})"
    return (f"batchsync: batch {event.get('batchId')} run {event.get('runId')} {outcome}: {event.get('message')} "
            f"- {event.get('recordsSynced', 0)} records in {event.get('durationMs', 0)} ms at {event.get('syncTime')}")


def chat_message(kind: str, text: str) -> dict[str, Any]:
    """The webhook body each chat expects for a plain text message."""
    if kind in ("wecom", "dingtalk"):
        return {"msgtype": "text", "text": {"content": text}}
    if kind == "slack":
        return {"text": text}
    raise ValueError(f"unknown chat kind {kind!r}: wecom, dingtalk or slack")


class Adapter(BaseHTTPRequestHandler):
    secret_key = os.environ.get("BATCHSYNC_SECRET_KEY", "")
    chat_url = os.environ.get("CHAT_WEBHOOK_URL", "")
    chat_kind = os.environ.get("CHAT_KIND", "wecom")

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not verify(body, self.secret_key, self.headers.get("X-Batchsync-Signature")):
            self.send_response(401)  # not from batchsync (or another key): drop it
            self.end_headers()
            return
        message = json.dumps(chat_message(self.chat_kind, text_of(json.loads(body)))).encode("utf-8")
        request = urllib.request.Request(self.chat_url, data=message, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = 204 if 200 <= answer.status < 300 else 502
        except OSError:
            status = 502  # batchsync retries with back-off
        self.send_response(status)
        self.end_headers()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    ThreadingHTTPServer(("127.0.0.1", port), Adapter).serve_forever()
