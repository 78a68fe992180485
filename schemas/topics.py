"""Topic names derived from the one prefix (`BATCHSYNC_TOPIC_PREFIX`)."""

from dataclasses import dataclass

DEFAULT_PREFIX = "integration.batch.sync"


@dataclass(frozen=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    @property
    def requested(self) -> str:
        return f"{self.prefix}.requested"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def replies(self) -> str:
        return f"{self.prefix}.replies"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def rejected(self) -> str:
        """Rows runs set aside under their `errorLimit` (`BatchRowRejected`)."""
        return f"{self.prefix}.rejected"

    def all(self) -> list[str]:
        return [self.requested, self.events, self.replies, self.dlq, self.rejected]
