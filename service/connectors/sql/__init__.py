"""What the SQL kinds (postgresql, mysql, sqlite) share: the source's window, estimate and chunks, the
target's checkpoint table and write path, and the query guard of query sources."""
