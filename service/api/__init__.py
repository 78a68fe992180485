"""The HTTP API: app factory, dependencies, envelope error handlers and the routes of SPEC §3."""
