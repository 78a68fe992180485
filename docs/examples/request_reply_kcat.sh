#!/bin/sh
# Ask batchsync for a sync from the shell with kcat, and wait for the reply.
#
#   BOOTSTRAP=localhost:9092 BATCH_ID=42 REPLY_TOPIC=integration.batch.sync.replies.ops ./request_reply_kcat.sh
#
# Environment: BOOTSTRAP, BATCH_ID, REPLY_TOPIC (required; the topic must exist or the broker must
# auto-create it), PREFIX (default integration.batch.sync), SERVICE (default ops-shell: producer and
# requestedBy), REQUEST_ID (default a new UUID), TIMEOUT (seconds, default 60), KCAT (default kcat).
# Prints the BatchSyncCompleted reply (one JSON line); exits 0 on success, 1 on a failed sync,
# 2 when no reply came in time.
set -eu

PREFIX=${PREFIX:-integration.batch.sync}
SERVICE=${SERVICE:-ops-shell}
TIMEOUT=${TIMEOUT:-60}
KCAT=${KCAT:-kcat}

new_uuid() { cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen | tr 'A-Z' 'a-z'; }

CORRELATION_ID=$(new_uuid)
EVENT_ID=$(new_uuid)
REQUEST_ID=${REQUEST_ID:-$(new_uuid)}
NOW=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)

REQUEST=$(printf '{"eventId":"%s","eventType":"BatchSyncRequested","schemaVersion":1,"occurredAt":"%s","correlationId":"%s","batchId":%s,"runId":null,"producer":"%s","requestId":"%s","requestedBy":"%s","trigger":"event","replyTo":"%s","resumeRunId":null}' \
  "$EVENT_ID" "$NOW" "$CORRELATION_ID" "$BATCH_ID" "$SERVICE" "$REQUEST_ID" "$SERVICE" "$REPLY_TOPIC")

# Keyed by batchId, so requests for one batch stay in order; headers repeat the envelope for routing.
printf '%s\n' "$REQUEST" | "$KCAT" -b "$BOOTSTRAP" -P -t "$PREFIX.requested" -k "$BATCH_ID" \
  -H eventType=BatchSyncRequested -H schemaVersion=1 -H "correlationId=$CORRELATION_ID" -H "eventId=$EVENT_ID"

# The reply is keyed by correlationId: read the reply topic until our key shows up.
deadline=$(( $(date +%s) + TIMEOUT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  reply=$("$KCAT" -b "$BOOTSTRAP" -C -t "$REPLY_TOPIC" -o beginning -e -q -f '%k\t%s\n' 2>/dev/null \
    | awk -F '\t' -v key="$CORRELATION_ID" '$1 == key { print $2; exit }') || true
  if [ -n "$reply" ]; then
    printf '%s\n' "$reply"
    case "$reply" in *'"success":true'*) exit 0 ;; *) exit 1 ;; esac
  fi
  sleep 0.2
done
echo "no reply for correlationId $CORRELATION_ID within ${TIMEOUT}s" >&2
exit 2
