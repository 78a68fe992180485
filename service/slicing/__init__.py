"""One run spread over many workers: slices planned from the data (docs/spec.md §10, docs/scale.md)."""
