"""Sends due notifications (service/notify/deliveries.py): each a POST of the recorded `BatchSyncCompleted`
with its `X-Batchsync-Signature`, through the same network policy as an http connection (every address
checked and pinned, `BATCHSYNC_EGRESS_DENY` refused), never following redirects."""

import asyncio
import logging

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.connectors.http.transport import PolicyTransport
from service.db.failures import database_down
from service.notify.deliveries import Attempt, Defaults, DeliveryStatus, Due, claim_due, masked, record
from service.notify.signature import HEADER, sign
from service.security.network import NetworkPolicy
from service.sync.errors import AccessDenied, SyncError

log = logging.getLogger(__name__)

BATCH = 20
IDLE_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


class Notifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], network: NetworkPolicy, secret_key: str,
                 defaults: Defaults, timeout: float) -> None:
        self._sessions = sessions
        self._network = network
        self._key = secret_key
        self._defaults = defaults
        self._timeout = timeout

    async def run(self) -> None:
        """Deliver until cancelled; a state store that is down is waited out with back-off."""
        delay = IDLE_SECONDS
        async with self._client() as client:
            while True:
                try:
                    sent = await self.deliver_due(client)
                    delay = IDLE_SECONDS
                    if sent:
                        continue
                except Exception as error:
                    if not database_down(error):
                        log.exception("notifier: delivering failed")
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                await asyncio.sleep(delay)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=PolicyTransport(self._network), follow_redirects=False,
                                 timeout=self._timeout, trust_env=False)

    async def deliver_due(self, client: httpx.AsyncClient | None = None) -> int:
        """Send every due notification once; returns how many were tried."""
        async with self._sessions.begin() as session:
            due = await claim_due(session, BATCH, hold_seconds=self._timeout * 2 + 5)
        if not due:
            return 0
        if client is None:
            async with self._client() as own:
                attempts = await asyncio.gather(*(self._post(own, d) for d in due))
        else:
            attempts = await asyncio.gather(*(self._post(client, d) for d in due))
        async with self._sessions.begin() as session:
            for item, attempt in zip(due, attempts, strict=True):
                status = await record(session, item, attempt, self._defaults)
                self._log(item, attempt, status)
        return len(due)

    async def _post(self, client: httpx.AsyncClient, due: Due) -> Attempt:
        headers = {"Content-Type": "application/json", HEADER: sign(due.body, self._key),
                   "User-Agent": "batchsync-notifier", "X-Batchsync-Event": "BatchSyncCompleted"}
        try:
            response = await client.post(due.url, content=due.body, headers=headers)
        except AccessDenied as refused:
            return Attempt(refused=True, error=str(refused))
        except SyncError as error:  # the name did not resolve: the policy's connection errors
            return Attempt(error=str(error))
        except httpx.HTTPError as error:
            return Attempt(error=f"{type(error).__name__}: {error}")
        if 200 <= response.status_code < 300:
            return Attempt(delivered=True, response_status=response.status_code)
        return Attempt(response_status=response.status_code, error=f"HTTP {response.status_code}")

    @staticmethod
    def _log(due: Due, attempt: Attempt, status: DeliveryStatus) -> None:
        where = masked(due.url)
        if status is DeliveryStatus.DELIVERED:
            log.info("notification %s delivered to %s", due.id, where)
        elif status is DeliveryStatus.REFUSED:
            log.warning("notification %s to %s refused by the network policy: %s", due.id, where, attempt.error)
        elif status is DeliveryStatus.FAILED:
            log.warning("notification %s to %s failed for good after %d attempts: %s", due.id, where,
                        due.attempts + 1, attempt.error)
        else:
            log.info("notification %s to %s failed (%s), will retry", due.id, where, attempt.error)
