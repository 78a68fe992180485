"""Connectors: one package per system kind (`postgresql/`, `mysql/`, `sqlite/`, `csv/`, `jsonl/`, `http/`,
`kafka/`), each declaring its `KIND` (params, source, target, write modes, check, type map), listed in
`registry.py`; the engine sees them only through `base.py`'s protocols. `sql/`, `files/` and
`json_records.py` hold what several kinds share."""
