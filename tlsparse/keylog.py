"""SSLKEYLOGFILE parsing: the NSS key log format that OpenSSL, GnuTLS, NSS, curl, browsers and Python's ssl write,
and that pcapng Decryption Secrets Blocks carry verbatim.

    CLIENT_RANDOM <client random hex> <TLS <= 1.2 master secret hex>
    CLIENT_HANDSHAKE_TRAFFIC_SECRET <client random hex> <secret hex>    (and the other TLS 1.3 labels)

Lines are keyed by the ClientHello's random, which is how a passive parser finds a connection's secrets. Nothing
here raises on bad input: malformed lines are skipped and counted (`KeyLog.malformed`), lines with a label we do
not use (`RSA`, QUIC or ECH labels) are counted as `unknown_labels`. The number of client randoms held is capped;
past the cap the oldest entries are dropped (counted in `evicted`): a live capture's newest secrets are the ones
its current connections need.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

__all__ = ["DEFAULT_MAX_ENTRIES", "KeyLog", "SessionSecrets"]

DEFAULT_MAX_ENTRIES = 100_000  # client randoms; a TLS 1.3 entry with all its secrets is well under 1 KB
_MAX_LINE = 1024  # longer lines are malformed: the longest valid one (48-byte secret) is under 200 characters
_LABEL = re.compile(r"[A-Z][A-Z0-9_]*")
_RANDOM_LEN = 32
_MASTER_SECRET_LEN = 48
_SECRET_LENS = frozenset((32, 48))  # TLS 1.3 secrets: SHA-256 or SHA-384 sized

# NSS label -> SessionSecrets field.
_LABELS = {
    "CLIENT_RANDOM": "master_secret",
    "CLIENT_EARLY_TRAFFIC_SECRET": "client_early_traffic_secret",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": "client_handshake_traffic_secret",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": "server_handshake_traffic_secret",
    "CLIENT_TRAFFIC_SECRET_0": "client_traffic_secret_0",
    "SERVER_TRAFFIC_SECRET_0": "server_traffic_secret_0",
    "EXPORTER_SECRET": "exporter_secret",
    "EARLY_EXPORTER_SECRET": "early_exporter_secret",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSecrets:
    """Everything the key log knows about one connection (one ClientHello random). Fields a log did not hold
    are None: a failed TLS 1.3 handshake often has its handshake secrets logged and no application ones."""

    client_random: bytes
    master_secret: bytes | None = None  # TLS <= 1.2 (CLIENT_RANDOM)
    client_early_traffic_secret: bytes | None = None
    client_handshake_traffic_secret: bytes | None = None
    server_handshake_traffic_secret: bytes | None = None
    client_traffic_secret_0: bytes | None = None
    server_traffic_secret_0: bytes | None = None
    exporter_secret: bytes | None = None
    early_exporter_secret: bytes | None = None

    @property
    def has_tls13(self) -> bool:
        return (self.client_handshake_traffic_secret is not None
                or self.server_handshake_traffic_secret is not None
                or self.client_traffic_secret_0 is not None or self.server_traffic_secret_0 is not None)

    def merged(self, newer: SessionSecrets) -> SessionSecrets:
        """These secrets with every field `newer` has replacing ours."""
        changes = {f.name: getattr(newer, f.name) for f in fields(newer)
                   if f.name != "client_random" and getattr(newer, f.name) is not None}
        return replace(self, **changes) if changes else self


class KeyLog:
    """Secrets by client random, from key log text. Mutable: `add_text` and `merge` add to it (later lines for
    the same client random and label win, as they would in an appended file)."""

    __slots__ = ("_entries", "evicted", "lines", "malformed", "max_entries", "unknown_labels")

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[bytes, SessionSecrets] = {}
        self.lines = 0  # non-blank, non-comment lines read
        self.malformed = 0  # lines skipped because they do not parse
        self.unknown_labels = 0  # well-formed lines with a label we have no use for (RSA, QUIC, ECH, ...)
        self.evicted = 0  # client randoms dropped to stay under max_entries

    # --- construction ---------------------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str | bytes, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> KeyLog:
        keylog = cls(max_entries=max_entries)
        keylog.add_text(text)
        return keylog

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, max_entries: int = DEFAULT_MAX_ENTRIES) -> KeyLog:
        """Read a key log file (OSError propagates: a missing file is the caller's mistake, not bad input)."""
        keylog = cls(max_entries=max_entries)
        with open(path, "rb") as f:
            keylog.add_lines(f)
        return keylog

    @classmethod
    def from_blocks(cls, blocks: Iterable[bytes], *, max_entries: int = DEFAULT_MAX_ENTRIES) -> KeyLog:
        """From pcapng Decryption Secrets Blocks (`Capture.secrets`), in file order."""
        keylog = cls(max_entries=max_entries)
        for block in blocks:
            keylog.add_text(block)
        return keylog

    def add_text(self, text: str | bytes) -> None:
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        self.add_lines(text.splitlines())

    def add_lines(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            self._add_line(line)

    def merge(self, other: KeyLog) -> KeyLog:
        """Add everything `other` holds (its secrets win over ours for the same field); returns self."""
        for secrets in other._entries.values():
            self._store(secrets)
        self.lines += other.lines
        self.malformed += other.malformed
        self.unknown_labels += other.unknown_labels
        return self

    # --- lookup ---------------------------------------------------------------------------------------------

    def secrets_for(self, client_random: bytes) -> SessionSecrets | None:
        return self._entries.get(bytes(client_random))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, client_random: object) -> bool:
        return isinstance(client_random, (bytes, bytearray)) and bytes(client_random) in self._entries

    def __repr__(self) -> str:
        return (f"KeyLog({len(self._entries)} client randoms, {self.malformed} malformed lines, "
                f"{self.unknown_labels} unknown labels, {self.evicted} evicted)")

    # --- parsing --------------------------------------------------------------------------------------------

    def _add_line(self, raw: bytes | bytearray) -> None:
        line = bytes(raw).strip()
        if not line or line.startswith(b"#"):
            return
        self.lines += 1
        if len(line) > _MAX_LINE:
            self.malformed += 1
            return
        parts = line.split()
        if len(parts) != 3:
            self.malformed += 1
            return
        try:
            label = parts[0].decode("ascii")
            client_random = bytes.fromhex(parts[1].decode("ascii"))
            secret = bytes.fromhex(parts[2].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            self.malformed += 1
            return
        if _LABEL.fullmatch(label) is None:
            self.malformed += 1
            return
        field_name = _LABELS.get(label)
        if field_name is None:
            self.unknown_labels += 1  # RSA <premaster prefix> lines and labels of other protocols
            return
        if len(client_random) != _RANDOM_LEN:
            self.malformed += 1
            return
        expected = {_MASTER_SECRET_LEN} if field_name == "master_secret" else _SECRET_LENS
        if len(secret) not in expected:
            self.malformed += 1
            return
        self._store(SessionSecrets(client_random=client_random, **{field_name: secret}))

    def _store(self, secrets: SessionSecrets) -> None:
        key = secrets.client_random
        old = self._entries.get(key)
        if old is not None:
            self._entries[key] = old.merged(secrets)
            return
        if self.max_entries <= 0:
            self.evicted += 1
            return
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: this is the oldest
            self.evicted += 1
        self._entries[key] = secrets
