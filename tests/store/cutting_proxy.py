"""A TCP proxy on loopback whose `cut` makes connections look dead to the client while the
server's end stays open and silent: what a client sees once the network drops its packets and
its keepalives go unanswered, before the server has noticed anything."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class _Carried:
    """One client connection and the proxy's connection to the server for it."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.cut = False

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self.cut:
                    sink.sendall(data)
        if not self.cut:  # an end closed normally: close the other too
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def sever(self) -> None:
        self.cut = True
        # Shut down, not only closed: a close leaves the socket open while a pump reads from it.
        self.client.shutdown(socket.SHUT_RDWR)  # the client's next read fails
        self.client.close()  # the server hears nothing


class CuttingProxy:
    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.carried: list[_Carried] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            carried = _Carried(client, socket.create_connection(self._upstream))
            self.carried.append(carried)
            for source, sink in ((client, carried.server), (carried.server, client)):
                threading.Thread(target=carried.pump, args=(source, sink), daemon=True).start()

    def cut(self, first: int = 0) -> None:
        """Cut the connections carried from the `first`-th on; later ones are carried as usual."""
        for carried in self.carried[first:]:
            carried.sever()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        for carried in self.carried:
            for end in (carried.client, carried.server):
                with contextlib.suppress(OSError):  # already shut down
                    end.shutdown(socket.SHUT_RDWR)  # wakes the pump reading from it
                end.close()


@contextlib.contextmanager
def cutting_proxy(host: str, port: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
