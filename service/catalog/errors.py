"""What a catalog operation can refuse; the HTTP layer maps each kind to a status code."""

from schemas.messages import bad_request, connection_missing


class CatalogError(Exception):
    """Base: `message` is the user-facing text of the envelope."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(CatalogError):
    """404: the connection, batch or run does not exist."""


class Invalid(CatalogError):
    """400: the request is well-formed but refers to something that cannot be used."""


class Conflict(CatalogError):
    """409: the request clashes with the current state (a name taken, a run active)."""


def missing_connection(connection_id: int) -> Invalid:
    return Invalid(bad_request(connection_missing(connection_id)))
