"""The params of a Kafka topic connection: brokers, topic, keys and the client's security settings."""

from typing import Any, ClassVar, Literal

from pydantic import Field

from service.connectors.params import Columns, ParamsModel, UrlForm, secret


class KafkaParams(ParamsModel):
    kind: ClassVar[str] = "kafka"
    url_form: ClassVar[UrlForm | None] = UrlForm(("kafka",), "kafka://broker-1:9092,broker-2:9092", required=False,
                                                 bare=True)
    """`params.bootstrap` is the usual way; a `url` (`kafka://host:port,…` or `host:port,…`) stands in for it."""
    table_means: ClassVar[str] = "The topic (`params.topic`, when set, wins and the table is a label)"
    bootstrap: str | None = Field(default=None, description="host:port[,host:port…]")
    topic: str | None = Field(default=None, description="Pins one topic; default the batch's table names it")
    groupId: str | None = Field(default=None, description="Consumer group whose offsets a source starts from and "
                                                          "commits after a success (default `batchsync-<topic>`)")
    key: str | list[str] | None = Field(default=None, description="Target: the column(s) that key each record "
                                                                 "(default the batch's keyColumns)")
    clientId: str | None = Field(default=None, description="Client id shown to the brokers (default "
                                                          "`batchsync-connector`)")
    columns: Columns = Field(default=None, description="Declared columns; default learned from the first records")
    onInvalid: Literal["fail", "skip"] | None = Field(
        default=None, description="A record that is not a JSON object fails the run (default) or is skipped")
    securityProtocol: str | None = Field(default=None, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    saslMechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    saslUsername: str | None = Field(default=None, description="SASL user")
    saslPassword: str | None = secret("SASL password")
    sslCafile: str | None = Field(default=None, description="CA bundle that signs the brokers' certificates")

    def destination(self, url: str | None) -> tuple[Any, ...]:
        servers = sorted(s.strip().lower() for s in (self.bootstrap or url or "").split(",") if s.strip())
        return (self.kind, tuple(servers), self.saslUsername, (self.securityProtocol or "PLAINTEXT").upper())
