"""Sans-I/O TLS record decryption from key log secrets (`tlsparse.keylog`), so that a passive parser can read the
encrypted handshake: TLS 1.3's EncryptedExtensions..Finished and encrypted alerts, TLS <= 1.2's Finished and alerts
after ChangeCipherSpec.

One `RecordDecryptor` per direction, fed that direction's encrypted record bodies in wire order (it counts the
record sequence numbers). Any failure (wrong keys, a tampered or truncated record, a suite we cannot decrypt)
raises the one exception of this layer, `DecryptError`.

Key schedules (RFC 8446 7.1-7.3, RFC 5246 5-6.3, RFC 7905, RFC 6655, RFC 7366) are built by hand over
`cryptography`'s HMAC and AEAD primitives.
"""
from __future__ import annotations

import hmac as _stdlib_hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from tlsparse import messages as m
from tlsparse.errors import DecryptError
from tlsparse.events import Sender
from tlsparse.keylog import SessionSecrets
from tlsparse.registry import cipher_suite_info

__all__ = [
    "CipherSpec",
    "DecryptError",
    "RecordDecryptor",
    "cipher_spec",
    "hkdf_expand_label",
    "tls12_prf",
]

_TLS13_MAX_INNER = 2**14 + 1  # RFC 8446 5.4: content + type byte; padding may take it to 2^14 + 256 in all


# --- key derivation ---------------------------------------------------------------------------------------------

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "MD5": hashes.MD5, "SHA": hashes.SHA1, "SHA256": hashes.SHA256, "SHA384": hashes.SHA384,
}


def _hmac(hash_alg: hashes.HashAlgorithm, key: bytes, data: bytes) -> bytes:
    h = crypto_hmac.HMAC(key, hash_alg)
    h.update(data)
    return h.finalize()


def hkdf_expand_label(hash_alg: hashes.HashAlgorithm, secret: bytes, label: str | bytes, context: bytes,
                      length: int) -> bytes:
    """RFC 8446 7.1 HKDF-Expand-Label: HKDF-Expand (RFC 5869 2.3) over the HkdfLabel structure, label prefixed
    with "tls13 "."""
    full_label = b"tls13 " + (label.encode("ascii") if isinstance(label, str) else label)
    info = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label + bytes((len(context),)) + context
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = _hmac(hash_alg, secret, block + info + bytes((counter,)))
        out += block
        counter += 1
    return out[:length]


def _p_hash(hash_alg: hashes.HashAlgorithm, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 5 P_hash: HMAC chained over A(i) = HMAC(secret, A(i-1))."""
    out = b""
    a = seed
    while len(out) < length:
        a = _hmac(hash_alg, secret, a)
        out += _hmac(hash_alg, secret, a + seed)
    return out[:length]


def tls12_prf(hash_alg: hashes.HashAlgorithm | None, secret: bytes, label: bytes, seed: bytes,
              length: int) -> bytes:
    """The TLS PRF. With a hash: TLS 1.2's P_<hash>(secret, label + seed) (RFC 5246 5). With None: TLS 1.0/1.1's
    P_MD5 XOR P_SHA1 over the two halves of the secret (RFC 2246 5)."""
    if hash_alg is not None:
        return _p_hash(hash_alg, secret, label + seed, length)
    half = (len(secret) + 1) // 2
    md5 = _p_hash(hashes.MD5(), secret[:half], label + seed, length)
    sha1 = _p_hash(hashes.SHA1(), secret[len(secret) - half:], label + seed, length)
    return bytes(x ^ y for x, y in zip(md5, sha1))


# --- cipher suites ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CipherSpec:
    """How one cipher suite protects records. `kind`: "gcm", "ccm", "chacha20_poly1305" (AEAD), "cbc" or "null"
    (MAC only). `fixed_iv_len` is what the key block (TLS <= 1.2) gives per direction; `explicit_nonce_len` the
    per-record nonce carried in front of TLS 1.2 GCM/CCM records."""

    code: int
    name: str
    cipher: str  # the registry's cipher token ("AES_128_GCM", "AES_256_CBC", ...)
    kind: str
    key_len: int
    fixed_iv_len: int
    explicit_nonce_len: int
    tag_len: int
    block_len: int  # CBC block size; 0 otherwise
    mac_hash: str | None  # CBC/NULL record MAC hash ("SHA", "SHA256", "SHA384", "MD5")
    prf_hash: str  # TLS 1.2 PRF / TLS 1.3 HKDF hash
    tls13: bool

    @property
    def mac_len(self) -> int:
        return _HASHES[self.mac_hash]().digest_size if self.mac_hash else 0


_CBC_CIPHERS: dict[str, tuple[Callable[[bytes], object], int, int]] = {  # name -> (algorithm, key length, block)
    "AES_128_CBC": (algorithms.AES, 16, 16),
    "AES_256_CBC": (algorithms.AES, 32, 16),
}
_AEAD_CIPHERS = {  # name -> (kind, key length, tag length)
    "AES_128_GCM": ("gcm", 16, 16),
    "AES_256_GCM": ("gcm", 32, 16),
    "AES_128_CCM": ("ccm", 16, 16),
    "AES_256_CCM": ("ccm", 32, 16),
    "AES_128_CCM_8": ("ccm", 16, 8),
    "AES_256_CCM_8": ("ccm", 32, 8),
    "CHACHA20_POLY1305": ("chacha20_poly1305", 32, 16),
}


def cipher_spec(cipher_suite: int) -> CipherSpec | None:
    """The record protection of a cipher suite, or None when this module cannot decrypt it (RC4, 3DES, ARIA,
    Camellia, GOST, export suites, ...)."""
    info = cipher_suite_info(cipher_suite)
    if info is None or info.export:
        return None
    tls13 = info.kx == "TLS13"
    prf_hash = "SHA384" if info.hash == "SHA384" else "SHA256"
    if info.cipher in _AEAD_CIPHERS:
        if info.hash not in (None, "SHA256", "SHA384"):
            return None
        kind, key_len, tag_len = _AEAD_CIPHERS[info.cipher]
        fixed_iv_len = 12 if tls13 or kind == "chacha20_poly1305" else 4
        explicit = 0 if tls13 or kind == "chacha20_poly1305" else 8
        return CipherSpec(code=cipher_suite, name=info.name, cipher=info.cipher, kind=kind, key_len=key_len,
                          fixed_iv_len=fixed_iv_len, explicit_nonce_len=explicit, tag_len=tag_len, block_len=0, mac_hash=None,
                          prf_hash=prf_hash, tls13=tls13)
    if tls13 or info.mac not in ("MD5", "SHA", "SHA256", "SHA384"):
        return None
    if info.cipher in _CBC_CIPHERS:
        _, key_len, block = _CBC_CIPHERS[info.cipher]
        return CipherSpec(code=cipher_suite, name=info.name, cipher=info.cipher, kind="cbc", key_len=key_len,
                          fixed_iv_len=block, explicit_nonce_len=0, tag_len=0, block_len=block, mac_hash=info.mac, prf_hash=prf_hash,
                          tls13=False)
    if info.cipher == "NULL":
        return CipherSpec(code=cipher_suite, name=info.name, cipher=info.cipher, kind="null", key_len=0,
                          fixed_iv_len=0, explicit_nonce_len=0, tag_len=0, block_len=0, mac_hash=info.mac, prf_hash=prf_hash,
                          tls13=False)
    return None


def _aead(spec: CipherSpec, key: bytes) -> AESGCM | AESCCM | ChaCha20Poly1305:
    if spec.kind == "gcm":
        return AESGCM(key)
    if spec.kind == "ccm":
        return AESCCM(key, tag_length=spec.tag_len)
    return ChaCha20Poly1305(key)


def _xor_nonce(iv: bytes, sequence: int) -> bytes:
    """RFC 8446 5.3 / RFC 7905 2: the 64-bit sequence number, left-padded to the IV length, XORed into the IV."""
    return (int.from_bytes(iv, "big") ^ sequence).to_bytes(len(iv), "big")


# --- TLS 1.3 key stages -----------------------------------------------------------------------------------------

_EARLY = "early"
_HANDSHAKE = "handshake"
_APPLICATION = "application"


class _TrafficKeys:
    """Key and IV of one TLS 1.3 traffic secret (RFC 8446 7.3)."""

    __slots__ = ("aead", "iv", "secret")

    def __init__(self, spec: CipherSpec, hash_alg: hashes.HashAlgorithm, secret: bytes) -> None:
        self.secret = secret
        key = hkdf_expand_label(hash_alg, secret, "key", b"", spec.key_len)
        self.iv = hkdf_expand_label(hash_alg, secret, "iv", b"", 12)
        self.aead = _aead(spec, key)


class _HandshakeFraming:
    """Follows handshake message boundaries through decrypted handshake bytes, without keeping the bodies, so a
    TLS 1.3 decryptor knows when its sender's Finished, EndOfEarlyData or KeyUpdate is complete."""

    __slots__ = ("body_left", "header")

    def __init__(self) -> None:
        self.header = b""  # a partial 4-byte message header
        self.body_left = 0  # body bytes of the current message still to come

    def feed(self, data: bytes) -> list[int]:
        """Message types completed by `data`."""
        done: list[int] = []
        pos = 0
        n = len(data)
        while pos < n:
            if self.body_left:
                k = min(self.body_left, n - pos)
                self.body_left -= k
                pos += k
                if self.body_left == 0:
                    done.append(self.header[0])
                    self.header = b""
                continue
            need = 4 - len(self.header)
            self.header += data[pos:pos + need]
            pos += min(need, n - pos)
            if len(self.header) == 4:
                self.body_left = int.from_bytes(self.header[1:4], "big")
                if self.body_left == 0:
                    done.append(self.header[0])
                    self.header = b""
        return done

    def reset(self) -> None:
        self.header = b""
        self.body_left = 0


# --- the decryptor ----------------------------------------------------------------------------------------------

class RecordDecryptor:
    """Decrypts one direction's records. Build it with `for_tls13` or `for_tls12`; feed every record of that
    direction that is under its keys, in order, to `decrypt` (or `skip` for records you do not need to read),
    so that sequence numbers stay right.

    TLS 1.3: the decryptor starts with the handshake traffic keys (or the early traffic keys for a client whose
    0-RTT data it will see) and moves on by itself: to the handshake keys after an EndOfEarlyData, to the
    application keys after its sender's Finished, to the next application keys after a KeyUpdate (RFC 8446
    7.2), each at the end of the record that completed the message. Callers that track the handshake themselves
    may call `next_keys()` instead. When a record does not decrypt, later keys of the schedule (and, for lost
    records, the next few sequence numbers) are tried before `DecryptError` is raised: a rejected 0-RTT attempt
    or a record missed in a gap does not end the decryption.
    """

    __slots__ = ("_cbc_algorithm", "_cbc_iv", "_cbc_key", "_framing", "_hash", "_keys", "_mac_key", "_sequence",
                 "_stage", "_stages", "cipher_suite", "encrypt_then_mac", "key_updates", "sender", "spec", "version")

    max_lost_records = 4  # sequence numbers tried past the expected one when a record does not decrypt

    def __init__(self, spec: CipherSpec, sender: Sender, version: int) -> None:
        self.spec = spec
        self.cipher_suite = spec.code
        self.sender = sender
        self.version = version  # 0x0304 for TLS 1.3, else the negotiated TLS <= 1.2 version
        self.encrypt_then_mac = False
        self.key_updates = 0
        self._sequence = 0
        self._hash = _HASHES[spec.prf_hash]()
        self._stages: list[tuple[str, bytes]] = []  # TLS 1.3: remaining key schedule
        self._stage = ""
        self._keys: _TrafficKeys | _Tls12Keys | None = None
        self._framing = _HandshakeFraming()
        self._mac_key = b""
        self._cbc_algorithm: Callable[[bytes], object] | None = None
        self._cbc_key = b""
        self._cbc_iv = b""  # TLS 1.0 CBC: the IV of the next record (the previous record's last block)

    # --- construction ---

    @classmethod
    def for_tls13(cls, secrets: SessionSecrets, cipher_suite: int, sender: Sender, *, early: bool = False,
                  initial_sequence: int = 0) -> RecordDecryptor:
        """A TLS 1.3 direction. `early`: start with the client's early traffic secret (0-RTT); `initial_sequence`:
        0-RTT records already sent (and not fed here); ignored when the early secret is not logged. Raises DecryptError when the suite is not a
        TLS 1.3 suite this module supports or the key log has none of that direction's secrets."""
        spec = cipher_spec(cipher_suite)
        if spec is None or not spec.tls13:
            raise DecryptError(f"unsupported TLS 1.3 cipher suite 0x{cipher_suite:04x}")
        self = cls(spec, sender, 0x0304)
        client = sender is Sender.CLIENT
        stages = []
        if early and client and secrets.client_early_traffic_secret is not None:
            stages.append((_EARLY, secrets.client_early_traffic_secret))
        hs = secrets.client_handshake_traffic_secret if client else secrets.server_handshake_traffic_secret
        if hs is not None:
            stages.append((_HANDSHAKE, hs))
        ap = secrets.client_traffic_secret_0 if client else secrets.server_traffic_secret_0
        if ap is not None:
            stages.append((_APPLICATION, ap))
        if not stages:
            raise DecryptError(f"no TLS 1.3 {sender.value} traffic secret in the key log")
        for _, secret in stages:
            if len(secret) != self._hash.digest_size:
                raise DecryptError(f"{len(secret)}-byte secret for a {spec.prf_hash} suite")
        self._stages = stages
        self._enter_next_stage()
        if self._stage == _EARLY:
            self._sequence = initial_sequence
        return self

    @classmethod
    def for_tls12(cls, master_secret: bytes, client_random: bytes, server_random: bytes, cipher_suite: int,
                  sender: Sender, *, version: int = 0x0303, encrypt_then_mac: bool = False) -> RecordDecryptor:
        """A TLS 1.0-1.2 direction from the moment its ChangeCipherSpec was sent (RFC 5246 6.3 key block).
        `encrypt_then_mac`: RFC 7366 was negotiated (CBC suites only)."""
        spec = cipher_spec(cipher_suite)
        if spec is None or spec.tls13:
            raise DecryptError(f"unsupported TLS 1.2 cipher suite 0x{cipher_suite:04x}")
        if not 0x0301 <= version <= 0x0303:
            raise DecryptError(f"unsupported version 0x{version:04x}")
        if version < 0x0303 and spec.kind != "cbc" and spec.kind != "null":
            raise DecryptError(f"{spec.name} under version 0x{version:04x}")
        if len(master_secret) != 48:
            raise DecryptError(f"{len(master_secret)}-byte master secret")
        self = cls(spec, sender, version)
        self.encrypt_then_mac = encrypt_then_mac and spec.kind == "cbc"
        prf_hash = _HASHES[spec.prf_hash]() if version == 0x0303 else None
        mac_len = spec.mac_len
        size = 2 * (mac_len + spec.key_len + spec.fixed_iv_len)
        block = tls12_prf(prf_hash, master_secret, b"key expansion", server_random + client_random, size)
        mine = 0 if sender is Sender.CLIENT else 1  # client_write_* come first
        pos = 0
        mac_keys = (block[pos:pos + mac_len], block[pos + mac_len:pos + 2 * mac_len])
        pos += 2 * mac_len
        keys = (block[pos:pos + spec.key_len], block[pos + spec.key_len:pos + 2 * spec.key_len])
        pos += 2 * spec.key_len
        ivs = (block[pos:pos + spec.fixed_iv_len], block[pos + spec.fixed_iv_len:pos + 2 * spec.fixed_iv_len])
        self._mac_key = mac_keys[mine]
        if spec.kind == "cbc":
            self._cbc_algorithm = _CBC_CIPHERS[spec.cipher][0]
            self._cbc_key = keys[mine]
            self._cbc_iv = ivs[mine]
        elif spec.kind != "null":
            self._keys = _Tls12Keys(_aead(spec, keys[mine]), ivs[mine])
        self._stage = _APPLICATION
        return self

    # --- state ---

    @property
    def sequence(self) -> int:
        """Sequence number of the next record."""
        return self._sequence

    @property
    def needs_every_record(self) -> bool:
        """Whether every record must go through `decrypt` (or `skip` with its ciphertext): TLS 1.3 hides the
        content type (a handshake message or alert may be in any record) and TLS 1.0 CBC chains IVs. Otherwise
        application data records can be `skip`ped unread."""
        return self.version == 0x0304 or (self.spec.kind == "cbc" and self.version == 0x0301)

    @property
    def key_phase(self) -> str:
        """TLS 1.3: "early", "handshake" or "application" (see `key_updates`); TLS <= 1.2: "application"."""
        return self._stage

    def next_keys(self) -> None:
        """TLS 1.3: move to the next keys of the schedule (early -> handshake -> application, then a KeyUpdate).
        Raises DecryptError when the key log did not hold them."""
        if self.version != 0x0304:
            raise DecryptError("next_keys is for TLS 1.3")
        self._advance()

    # --- records ---

    def skip(self, ciphertext: bytes | None = None) -> None:
        """A record of this direction that will not be decrypted: only its sequence number counts. TLS 1.0 CBC
        chains IVs across records, so there the ciphertext is needed (without it later records fail)."""
        if (self.spec.kind == "cbc" and self.version == 0x0301 and ciphertext is not None
                and len(ciphertext) >= self.spec.block_len):
            self._cbc_iv = bytes(ciphertext[-self.spec.block_len:])
        self._sequence += 1

    def decrypt(self, content_type: int, version: int, ciphertext: bytes) -> tuple[int, bytes]:
        """Decrypt one record body given its header's content type and version. Returns (inner content type,
        plaintext): for TLS 1.3 the type hidden in TLSInnerPlaintext, for TLS <= 1.2 the header's type."""
        ciphertext = bytes(ciphertext)
        if self.version == 0x0304:
            return self._decrypt13(content_type, version, ciphertext)
        seq = self._sequence
        plaintext = self._decrypt12(content_type, version, ciphertext, seq)
        self._sequence = seq + 1
        return content_type, plaintext

    # --- TLS 1.3 ---

    def _enter_next_stage(self) -> None:
        stage, secret = self._stages.pop(0)
        self._stage = stage
        self._keys = _TrafficKeys(self.spec, self._hash, secret)
        self._sequence = 0
        self._framing.reset()

    def _advance(self) -> None:
        if self._stages:
            self._enter_next_stage()
            return
        if self._stage != _APPLICATION or self._keys is None:
            raise DecryptError(f"no {self.sender.value} traffic secret after the {self._stage} keys")
        # RFC 8446 7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length)
        secret = hkdf_expand_label(self._hash, self._keys.secret, "traffic upd", b"", self._hash.digest_size)
        self._keys = _TrafficKeys(self.spec, self._hash, secret)
        self._sequence = 0
        self._framing.reset()
        self.key_updates += 1

    def _open13(self, keys: _TrafficKeys, sequence: int, header: bytes, ciphertext: bytes) -> bytes | None:
        try:
            return keys.aead.decrypt(_xor_nonce(keys.iv, sequence), ciphertext, header)
        except InvalidTag:
            return None

    def _decrypt13(self, content_type: int, version: int, ciphertext: bytes) -> tuple[int, bytes]:
        if len(ciphertext) < self.spec.tag_len + 1:
            raise DecryptError(f"{len(ciphertext)}-byte record shorter than the tag", sequence=self._sequence)
        header = bytes((content_type,)) + version.to_bytes(2, "big") + len(ciphertext).to_bytes(2, "big")
        keys = self._keys
        assert keys is not None
        seq = self._sequence
        inner = self._open13(keys, seq, header, ciphertext)
        if inner is None:
            inner = self._recover13(header, ciphertext)
        if inner is None:
            missing = "" if self._stages or self._stage == _APPLICATION else " (the next keys are not in the key log)"
            raise DecryptError(f"authentication failed with the {self._stage} keys{missing}", sequence=seq)
        self._sequence += 1
        # RFC 8446 5.4: content, then the real type, then zero padding.
        end = len(inner.rstrip(b"\x00"))
        if end == 0:
            raise DecryptError("no content type in the decrypted record (all padding)", sequence=seq)
        inner_type = inner[end - 1]
        plaintext = inner[:end - 1]
        if len(plaintext) > _TLS13_MAX_INNER:
            raise DecryptError(f"{len(plaintext)}-byte plaintext", sequence=seq)
        if inner_type == m.HANDSHAKE:
            self._after_handshake_record(plaintext)
        return inner_type, plaintext

    def _recover13(self, header: bytes, ciphertext: bytes) -> bytes | None:
        """The record did not open with the expected keys and sequence number: try the next few sequence
        numbers (records lost in a gap), then the next keys of the schedule (a missed key change)."""
        keys = self._keys
        assert keys is not None
        for lost in range(1, self.max_lost_records + 1):
            inner = self._open13(keys, self._sequence + lost, header, ciphertext)
            if inner is not None:
                self._sequence += lost
                return inner
        saved = (list(self._stages), self._stage, self._keys, self._sequence, self.key_updates,
                 self._framing.header, self._framing.body_left)
        for _ in range(len(self._stages) + 1):
            try:
                self._advance()
            except DecryptError:
                break
            for seq in range(self.max_lost_records + 1):
                assert self._keys is not None
                inner = self._open13(self._keys, seq, header, ciphertext)
                if inner is not None:
                    self._sequence = seq
                    return inner
        (self._stages, self._stage, self._keys, self._sequence, self.key_updates, self._framing.header,
         self._framing.body_left) = saved
        return None

    def _after_handshake_record(self, plaintext: bytes) -> None:
        change = False
        for msg_type in self._framing.feed(plaintext):
            if ((self._stage == _EARLY and msg_type == m.END_OF_EARLY_DATA)
                    or (self._stage == _HANDSHAKE and msg_type == m.FINISHED)
                    or (self._stage == _APPLICATION and msg_type == m.KEY_UPDATE)):
                change = True  # RFC 8446 5.1: the new keys start with the next record
        if change:
            try:
                self._advance()
            except DecryptError:
                # Keys not in the log: keep the old ones; the next record will fail and say so.
                self._framing.reset()

    # --- TLS <= 1.2 ---

    def _decrypt12(self, content_type: int, version: int, record: bytes, seq: int) -> bytes:
        spec = self.spec
        kind = spec.kind
        if kind == "cbc":
            return self._decrypt_cbc(content_type, version, record, seq)
        if kind == "null":
            return self._check_mac(content_type, version, record, seq)
        keys = self._keys
        assert isinstance(keys, _Tls12Keys)
        overhead = spec.explicit_nonce_len + spec.tag_len
        if len(record) < overhead:
            raise DecryptError(f"{len(record)}-byte record shorter than nonce and tag", sequence=seq)
        if kind == "chacha20_poly1305":
            nonce = _xor_nonce(keys.iv, seq)
        else:
            nonce = keys.iv + record[:spec.explicit_nonce_len]
        aad = (seq.to_bytes(8, "big") + bytes((content_type,)) + version.to_bytes(2, "big")
               + (len(record) - overhead).to_bytes(2, "big"))
        try:
            return keys.aead.decrypt(nonce, record[spec.explicit_nonce_len:], aad)
        except InvalidTag:
            raise DecryptError(f"authentication failed ({spec.name})", sequence=seq) from None

    def _mac(self, content_type: int, version: int, seq: int, content: bytes) -> bytes:
        assert self.spec.mac_hash is not None
        header = (seq.to_bytes(8, "big") + bytes((content_type,)) + version.to_bytes(2, "big")
                  + len(content).to_bytes(2, "big"))
        return _hmac(_HASHES[self.spec.mac_hash](), self._mac_key, header + content)

    def _check_mac(self, content_type: int, version: int, data: bytes, seq: int) -> bytes:
        """MAC-then-encrypt's inner part (and the NULL cipher's record): content || MAC."""
        mac_len = self.spec.mac_len
        if len(data) < mac_len:
            raise DecryptError(f"{len(data)}-byte record shorter than the MAC", sequence=seq)
        content, mac = data[:len(data) - mac_len], data[len(data) - mac_len:]
        if not _stdlib_hmac.compare_digest(self._mac(content_type, version, seq, content), mac):
            raise DecryptError("bad record MAC", sequence=seq)
        return content

    def _decrypt_cbc(self, content_type: int, version: int, record: bytes, seq: int) -> bytes:
        spec = self.spec
        block = spec.block_len
        mac_len = spec.mac_len
        explicit_iv = self.version >= 0x0302  # TLS 1.1+ (RFC 4346 6.2.3.2); TLS 1.0 chains IVs across records
        if self.encrypt_then_mac:  # RFC 7366: IV || ciphertext || MAC(seq, header, IV || ciphertext)
            if len(record) < mac_len + block:
                raise DecryptError(f"{len(record)}-byte record too short for encrypt-then-MAC", sequence=seq)
            sealed, mac = record[:len(record) - mac_len], record[len(record) - mac_len:]
            if not _stdlib_hmac.compare_digest(self._mac(content_type, version, seq, sealed), mac):
                raise DecryptError("bad record MAC (encrypt-then-MAC)", sequence=seq)
            record = sealed
        if explicit_iv:
            iv, body = record[:block], record[block:]
        else:
            iv, body = self._cbc_iv, record
        if not body or len(body) % block:
            raise DecryptError(f"{len(body)} bytes of CBC ciphertext, not a multiple of {block}", sequence=seq)
        assert self._cbc_algorithm is not None
        decryptor = Cipher(self._cbc_algorithm(self._cbc_key), modes.CBC(iv)).decryptor()  # type: ignore[arg-type]
        padded = decryptor.update(body) + decryptor.finalize()
        if not explicit_iv:
            self._cbc_iv = body[-block:]
        pad = padded[-1]
        if pad + 1 > len(padded) or padded[len(padded) - pad - 1:] != bytes((pad,)) * (pad + 1):
            raise DecryptError("bad CBC padding", sequence=seq)
        inner = padded[:len(padded) - pad - 1]
        if self.encrypt_then_mac:
            return inner
        return self._check_mac(content_type, version, inner, seq)


class _Tls12Keys:
    """A TLS <= 1.2 AEAD key with its fixed IV (salt)."""

    __slots__ = ("aead", "iv")

    def __init__(self, aead: AESGCM | AESCCM | ChaCha20Poly1305, iv: bytes) -> None:
        self.aead = aead
        self.iv = iv
