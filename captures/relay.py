"""A small loopback TCP relay that misbehaves on purpose, for the network-failure scenarios of the corpus.

The relay listens on 127.0.0.1, and for each accepted connection either forwards bytes to an upstream server or
plays a broken network: it can hold data back (a slow path, so that an injected packet overtakes the real answer),
swallow a direction, black-hole a connection after it was accepted, reset it, or hand the client the server's TLS
records one per segment (so that a small ServerHello and a large Certificate travel in different packets, as they do
on a path with a 1500-byte MTU). It terminates TCP on both sides: it cannot make real TCP loss — that is what the
iptables rules in `scenarios_network.py` are for.

Everything is bounded: sockets time out, threads are daemons joined on `close()`, and the relay stops accepting
after `lifetime` seconds.
"""
from __future__ import annotations

import enum
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

_TLS_RECORD_HEADER = 5
_CHUNK = 65536


class RelayMode(enum.Enum):
    FORWARD = "forward"  # connect upstream and pump both directions (subject to each Direction's settings)
    BLACKHOLE = "blackhole"  # accept, read and discard whatever the client sends; never answer, never connect upstream
    RESET_AFTER_FIRST = "reset_after_first"  # read the client's first bytes, then abort the connection with RST


@dataclass(frozen=True, slots=True)
class Direction:
    """How one direction of a forwarded connection behaves."""

    delay: float = 0.0  # hold every chunk this long before sending it on (a slow path or a slow server)
    drop: bool = False  # read and discard: the peer sees its data acknowledged and never answered
    split_records: bool = False  # send one TLS record per send() call, with Nagle off, so records get own segments
    reset_at_chunk: int | None = None  # abort the client's connection with RST (SO_LINGER 0) when this
    # direction's Nth chunk (1-based) arrives, instead of forwarding it: a server or proxy dying mid-handshake
    max_send: int | None = None  # send at most this many bytes at a time (one MSS), Nagle off: lo does not cut
    # large sends into MSS-sized segments (it offloads that and never has to), so a 3 KB send shows as one packet


def set_linger_reset(sock: socket.socket) -> None:
    """Make the next close() abort the connection with a RST instead of a FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Relay:
    """`with Relay(listen_port, upstream=("127.0.0.1", 4433)) as relay:` relays connections until closed."""

    def __init__(
        self,
        listen_port: int,
        upstream: tuple[str, int] | None = None,
        *,
        mode: RelayMode = RelayMode.FORWARD,
        to_server: Direction = Direction(),
        to_client: Direction = Direction(),
        client_mss: int | None = None,
        lifetime: float = 30.0,
        host: str = "127.0.0.1",
    ) -> None:
        if mode is RelayMode.FORWARD and upstream is None:
            raise ValueError("a forwarding relay needs an upstream address")
        self.listen_port = listen_port
        self.upstream = upstream
        self.mode = mode
        self.to_server = to_server
        self.to_client = to_client
        # TCP_MAXSEG on the listening socket caps the MSS of the accepted sockets, both the one advertised to the client
        # and the one used for sending: the client-facing leg then looks like an Ethernet path instead of lo's 64 KiB.
        self.client_mss = client_mss
        self.lifetime = lifetime
        self.host = host
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.client_mss is not None:
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, self.client_mss)
        listener.bind((self.host, self.listen_port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass
            self._sockets.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- internals -------------------------------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept_loop(self) -> None:
        assert self._listener is not None
        deadline = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._track(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        if self.mode is RelayMode.BLACKHOLE:
            self._discard(client)
            return
        if self.mode is RelayMode.RESET_AFTER_FIRST:
            self._wait_readable(client)
            try:
                client.recv(_CHUNK)
            except OSError:
                pass
            set_linger_reset(client)
            client.close()
            return
        assert self.upstream is not None
        server = self._track(socket.create_connection(self.upstream, timeout=5))
        server.settimeout(0.2)
        self._spawn(self._pump, client, server, self.to_server, client)
        self._pump(server, client, self.to_client, client)

    def _wait_readable(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                return

    def _discard(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                if not sock.recv(_CHUNK):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _pump(self, src: socket.socket, dst: socket.socket, how: Direction, client: socket.socket) -> None:
        paced = how.split_records or how.max_send is not None
        chunks = 0
        if paced:
            dst.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        while not self._stop.is_set():
            try:
                data = src.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                # Pass the half-close on, so that a FIN from one side reaches the other as a FIN.
                if pending and not how.drop:
                    self._send(dst, pending)
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            chunks += 1
            if how.reset_at_chunk == chunks:
                set_linger_reset(client)
                client.close()
                (dst if dst is not client else src).close()
                return
            if how.drop:
                continue
            if how.delay:
                self._stop.wait(how.delay)
            if not paced:
                self._send(dst, data)
                continue
            if how.split_records:
                pending += data
                units, pending = split_tls_records(pending)
            else:
                units = [data]
            step = how.max_send or _CHUNK
            for unit in units:
                for start in range(0, len(unit), step):
                    self._send(dst, unit[start:start + step])
                    # A short pause lets each send leave as its own segment; on loopback they would coalesce.
                    time.sleep(0.01)

    @staticmethod
    def _send(dst: socket.socket, data: bytes) -> None:
        try:
            dst.sendall(data)
        except OSError:
            pass


def split_tls_records(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Cut a byte stream into whole TLS records; return them and the incomplete rest."""
    records: list[bytes] = []
    offset = 0
    while len(buffer) - offset >= _TLS_RECORD_HEADER:
        length = int.from_bytes(buffer[offset + 3 : offset + 5], "big")
        end = offset + _TLS_RECORD_HEADER + length
        if end > len(buffer):
            break
        records.append(buffer[offset:end])
        offset = end
    return records, buffer[offset:]
