"""Trust boundaries (docs/spec.md §7): the policies connectors consult, secrets at rest, event signatures."""
