"""A TCP proxy on loopback that can freeze: connections stay open and nothing more is forwarded, the shape
of a server that stopped answering (SIGSTOP, a network partition) behind connections a pool already holds.
`kill` closes everything and refuses new connections, the shape of a server that is gone."""

import contextlib
import select
import socket
import threading
from collections.abc import Iterator


class FreezableProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.frozen = threading.Event()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def freeze(self) -> None:
        self.frozen.set()

    def kill(self) -> None:
        """Close every connection and the listener: new connections are refused."""
        self._stopped.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.frozen.is_set():  # a frozen server's kernel still accepts; nothing answers
                self._sockets.append(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            thread = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            thread.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            self._forward({a: b, b: a})
        finally:  # one side closed: close the other, as the server would (a client waits for that EOF)
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def _forward(self, peers: dict[socket.socket, socket.socket]) -> None:
        while not self._stopped.is_set():
            if self.frozen.is_set():
                self._stopped.wait(0.05)
                continue
            try:
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.frozen.is_set():
                        break  # swallowed: frozen mid-exchange
                    peers[sock].sendall(data)
            except OSError:
                return


@contextlib.contextmanager
def freezable_proxy(upstream_port: int) -> Iterator[FreezableProxy]:
    proxy = FreezableProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.kill()
