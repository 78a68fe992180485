"""What a catalog operation can refuse; the HTTP layer maps each kind to a status code."""


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


BATCH_NOT_FOUND = "批次不存在"
CONNECTION_NOT_FOUND = "连接不存在"
RUN_NOT_FOUND = "运行记录不存在"
CONNECTION_IN_USE = "连接正在被批次使用"
BATCH_RUNNING = "批次正在同步中"


def missing_connection(connection_id: int) -> Invalid:
    return Invalid(f"参数错误：连接不存在：{connection_id}")
