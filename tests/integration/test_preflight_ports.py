"""A port is taken only when something listens on it: the TIME_WAIT sockets a stopped server leaves behind
do not count, since servers bind with SO_REUSEADDR (the check that moved `up`'s embedded ports, issue 9)."""

import socket

import pytest

from service.preflight import port_taken


def _time_wait_on_a_closed_port() -> int:
    """A port whose server closed a connection first and then stopped: TIME_WAIT remains, nobody listens."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = int(server.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    return port


def test_time_wait_sockets_do_not_take_a_port() -> None:
    port = _time_wait_on_a_closed_port()
    with socket.socket() as plain, pytest.raises(OSError):  # the old check: a bind without SO_REUSEADDR
        plain.bind(("127.0.0.1", port))
    assert not port_taken(port)


def test_a_listener_takes_a_port() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert port_taken(int(listener.getsockname()[1]))
