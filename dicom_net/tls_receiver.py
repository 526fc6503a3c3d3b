"""TLS on the storage port ([local] tls): the handshake within ARTIM, then a plain socket that
both receive paths serve as if the connection were plain.

Both paths rely on what a plain socket offers and an SSLSocket does not: MSG_PEEK for the
A-ASSOCIATE-RQ (association_request.py) and SO_RCVTIMEO for their PDU timeouts (an SSLSocket
in blocking mode retries a timed-out read for ever). So each TLS connection is terminated
here: a pump thread copies bytes between the TLS connection and one end of a socketpair,
and the receiver serves the other end. Its timeouts then end the connection as they would a
plain one (the receiver shuts the TLS socket down when it is done, which ends the pump).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


def accept_tls(
    sock: socket.socket, context: ssl.SSLContext, deadline: float, peer: str
) -> ssl.SSLSocket | None:
    """The accepted connection after a server-side TLS handshake finished by `deadline`
    (time.monotonic(), the ARTIM deadline); None, the connection closed, when it fails or
    is late (a plain DICOM connection fails here: its A-ASSOCIATE-RQ is no TLS record)."""
    try:
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError:
        _close(sock)
        return None
    try:
        # A socket timeout bounds the whole handshake in CPython, not each read.
        tls.settimeout(max(deadline - time.monotonic(), 0.001))
        tls.do_handshake()
        tls.settimeout(None)
    except (OSError, ValueError) as exc:  # ssl.SSLError, TimeoutError, reset ...
        log.warning("connection from %s closed: no TLS handshake (%s)", peer, exc)
        _close(tls)
        return None
    return tls


class TlsBridge:
    """A plain socket (`plain`) whose peer is the TLS connection, bytes copied by a thread."""

    def __init__(self, tls: ssl.SSLSocket, name: str):
        self.tls = tls
        self.plain, self._inner = socket.socketpair()
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the TLS connection and the pump (the receiver is done with `plain`)."""
        with contextlib.suppress(OSError):
            # socket.socket's shutdown: SSLSocket's own drops its SSL object under the pump.
            socket.socket.shutdown(self.tls, socket.SHUT_RDWR)
        _close(self.plain)
        self._thread.join(timeout=5)

    def _pump(self) -> None:
        tls, inner = self.tls, self._inner
        tls_open = inner_open = True  # whether each side may still send
        # poll, not select: a receiver with many open files has descriptors above 1024.
        poller = select.poll()
        poller.register(tls, select.POLLIN)
        poller.register(inner, select.POLLIN)
        try:
            while tls_open or inner_open:
                if tls_open and tls.pending():  # decrypted bytes the kernel no longer shows
                    ready = {tls.fileno()}
                else:
                    ready = {fd for fd, _event in poller.poll()}
                if tls_open and tls.fileno() in ready:
                    data = tls.recv(_CHUNK)
                    if data:
                        inner.sendall(data)
                    else:  # the peer closed: the receiver reads the end of the stream
                        tls_open = False
                        poller.unregister(tls)
                        inner.shutdown(socket.SHUT_WR)
                if inner_open and inner.fileno() in ready:
                    data = inner.recv(_CHUNK)
                    if data:
                        tls.sendall(data)
                    else:  # the receiver closed its side: so does the TCP connection
                        inner_open = False
                        poller.unregister(inner)
                        socket.socket.shutdown(tls, socket.SHUT_WR)
        except (OSError, ValueError):  # reset, shut down by close(), TLS error
            pass
        finally:
            _close(inner)
            _close(tls)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
