"""Trust boundaries (SPEC §7): the policies connectors consult, secrets at rest, event signatures."""
