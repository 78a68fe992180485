"""One router per resource; each handler parses, calls one catalog or run-request function, maps the result."""
