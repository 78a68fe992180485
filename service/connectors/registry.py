"""The connection types that exist: one line per kind, each package's `KIND` (`service.connectors.kind`).

Everything else asks here: the catalog (params schemas, the file paths a connection names, whether a
batch can run), and the engine through `REGISTRY`, the `Connectors` factory the composition root hands it.
Adding a system is a new package and its line in `KINDS`.
"""

from dataclasses import dataclass
from typing import Any

from schemas.api import SourceSpec, TargetSpec
from schemas.messages import (
    incremental_unsupported,
    kind_not_registered,
    mode_unsupported,
    not_a_source,
    not_a_target,
    split_unsupported,
    unsupported_kind,
)
from service.connectors import csv, http, jsonl, kafka, mysql, postgresql, sqlite
from service.connectors.base import Source, Target
from service.connectors.kind import ConnectorKind
from service.connectors.params import ParamsInvalid, ParamsModel
from service.connectors.params import validate as validate_model
from service.security.policy import AccessPolicy
from service.sync.errors import AccessDenied, ConfigInvalid
from service.sync.model import Endpoint

KINDS: dict[str, ConnectorKind] = {
    k.name: k for k in (postgresql.KIND, mysql.KIND, sqlite.KIND, csv.KIND, jsonl.KIND, http.KIND, kafka.KIND)
}

PARAMS: dict[str, type[ParamsModel]] = {name: kind.params for name, kind in KINDS.items()}
"""Each type's params model (the catalog masks and encrypts secrets by their marks)."""


@dataclass(frozen=True)
class Registry:
    """The `Connectors` factory over a set of kinds: builds sources and targets, refusing what a kind
    cannot be or do."""

    kinds: dict[str, ConnectorKind]

    def kind(self, name: str) -> ConnectorKind:
        kind = self.kinds.get(name)
        if kind is None:
            raise ConfigInvalid(unsupported_kind(name))
        return kind

    def source_for(self, endpoint: Endpoint, spec: SourceSpec, connect_timeout: float) -> Source:
        """An unopened source; enter it (`async with`) to connect."""
        factory = self.kind(endpoint.type).source
        if factory is None:
            raise ConfigInvalid(not_a_source(endpoint.type))
        return factory(endpoint, spec, connect_timeout)

    def target_for(self, endpoint: Endpoint, spec: TargetSpec, connect_timeout: float) -> Target:
        """An unopened target; enter it (`async with`) to connect."""
        kind = self.kind(endpoint.type)
        if kind.target is None:
            raise ConfigInvalid(not_a_target(endpoint.type))
        if spec.mode.value not in kind.modes:
            raise ConfigInvalid(mode_unsupported(endpoint.type, spec.mode.value))
        return kind.target(endpoint, spec, connect_timeout)


REGISTRY = Registry(KINDS)
"""The built-in kinds as the engine's connector factory (`service.bootstrap` hands it over)."""


def check_batch(source_type: str, target_type: str, mode: str, *, cursor: bool = False,
                split: bool = False) -> str | None:
    """Why a batch with these connection types, write mode, (with `cursor`) incremental reads and (with `split`)
    slices cannot run, or None when it can. Slices need a source read by ranges and a transactional target that
    many writers may share and an overwrite can be staged into (`SliceableSource`, `SliceStagingTarget`)."""
    source, target = KINDS.get(source_type), KINDS.get(target_type)
    if source is None or target is None:
        return unsupported_kind(source_type if source is None else target_type)
    if source.source is None:
        return not_a_source(source_type)
    if target.target is None:
        return not_a_target(target_type)
    if mode not in target.modes:
        return mode_unsupported(target_type, mode)
    if cursor and not source.cursor:
        return incremental_unsupported(source_type)
    if split and not hasattr(source.source, "restrict"):
        return split_unsupported(source_type, "source")
    if split and not hasattr(target.target, "publish_stages"):
        return split_unsupported(target_type, "target")
    return None


def check_paths(kind: str, url: str | None, params: dict[str, Any] | None, policy: AccessPolicy) -> str | None:
    """Why the file policy refuses a connection of `kind` to be stored (`文件路径不在允许的目录中`), or None.

    The same paths are resolved again whenever a run opens them; this check refuses them up front.
    """
    known = KINDS.get(kind)
    if known is None or known.paths is None:
        return None
    endpoint = Endpoint(type=kind, url=url, params=dict(params or {}), policy=policy)
    try:
        for path in known.paths(endpoint):
            policy.files.resolve(path)
    except AccessDenied as refused:
        return refused.reason
    return None


def params_model(kind: str) -> type[ParamsModel]:
    """The params schema of `kind`, or ParamsInvalid when no connector of that name is registered."""
    if kind not in PARAMS:
        raise ParamsInvalid(kind_not_registered(sorted(PARAMS), kind))
    return PARAMS[kind]


def validate_params(kind: str, params: dict[str, Any], options: dict[str, Any] | None = None, *,
                    url: str | None = None, check_url: bool = False) -> ParamsModel:
    """The params as their type's model, or ParamsInvalid naming the first offending key; with `check_url`
    (what the catalog asks on create and edit) also the URL when it is missing or its scheme is not one
    the type takes."""
    return validate_model(params_model(kind), params, options, url, check_url=check_url)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each type's params, secrets marked `"secret": true`, for the API to publish."""
    return {kind: model.model_json_schema() for kind, model in PARAMS.items()}


def describe(kinds: dict[str, ConnectorKind] | None = None) -> list[dict[str, Any]]:
    """Each connection type as data, sorted by name (Airbyte's `spec`, Kafka Connect's `validate`): what it
    can be (source, target, its write modes, incremental reads), its `url` form, what a batch's `table`
    names on it, and the JSON Schema of its `params`. The API publishes it (`GET
    /integration/connection/types`) for forms, and docs/connectors.md is generated from it."""
    out = []
    for name, kind in sorted((kinds or KINDS).items()):
        form = kind.params.url_form
        out.append({
            "type": name,
            "source": kind.source is not None,
            "target": kind.target is not None,
            "modes": sorted(kind.modes),
            "incremental": kind.cursor,
            "url": None if form is None else {"schemes": list(form.schemes), "example": form.example,
                                              "required": form.required},
            "table": kind.params.table_means,
            "params": kind.params.model_json_schema(),
        })
    return out


async def test_connection(endpoint: Endpoint, connect_timeout: float) -> None:
    """Connect and run a trivial request, raising the same SyncErrors a sync would."""
    await REGISTRY.kind(endpoint.type).check(endpoint, connect_timeout)
