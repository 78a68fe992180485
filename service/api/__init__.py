"""The HTTP API: app factory, dependencies, envelope error handlers and the routes of docs/spec.md §3."""
