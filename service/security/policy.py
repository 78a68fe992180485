"""The access policy a connector consults before it touches a file or the network (docs/spec.md §7).

Built once from Settings by the composition root and handed to connectors on their Endpoint, so a
connector never decides alone what it may reach. The default is the strictest policy: no file
roots, the default egress deny list, and nothing known about the service's own state store or bus.
"""

from dataclasses import dataclass, field
from pathlib import Path

from service.config import Settings
from service.security.files import FilePolicy
from service.security.network import NetworkPolicy
from service.security.secrets import Keyring


@dataclass(frozen=True)
class AccessPolicy:
    files: FilePolicy = field(default_factory=FilePolicy)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    secrets: Keyring = field(default_factory=Keyring, compare=False)
    """The keys that seal and open connection secrets; the catalog alone uses them (`endpoint_of`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "AccessPolicy":
        return cls(
            files=FilePolicy.of(settings.file_root_paths, Path(settings.data_dir)),
            network=NetworkPolicy.of(settings.egress_deny_list, settings.database_url, settings.kafka_bootstrap,
                                     settings.topic_prefix),
            secrets=Keyring.from_settings(settings),
        )
