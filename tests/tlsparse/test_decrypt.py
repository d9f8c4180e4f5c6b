"""Record decryption with key log secrets: known answers from RFC 8448 and the TLS 1.2 PRF vectors, live handshakes
made with Python's ssl (OpenSSL) across the TLS 1.0-1.3 record protections, and real captures with their key logs
(the published ssldump samples against tshark's decryption, our own corpus against tshark run here)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import feed, run_tls
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsflow.capture import open_capture
from tlsflow.tcp import ConnectionOpened, StreamChunk, TcpReassembler
from tlsparse import (
    AlertSeen,
    Certificate,
    EncryptedRecordSeen,
    Event,
    HandshakeSeen,
    ParseAnomaly,
    Sender,
    TlsConnection,
)
from tlsparse import messages as m
from tlsparse.decrypt import DecryptError, RecordDecryptor, cipher_spec, hkdf_expand_label, tls12_prf
from tlsparse.keylog import KeyLog, SessionSecrets

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TLSFLOW_SHARED", REPO / ".." / "shared"))
KEYLOG_DIR = SHARED / "captures" / "keylog"
CORPUS = REPO / "captures" / "corpus"
TSHARK = shutil.which("tshark")


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# --- RFC 8448 section 3, "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256) --------------------------------------

RFC8448_CLIENT_HELLO = h("""
01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7
00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01 00 01 00 00 0a 00 14 00
12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60
e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d 00 20
00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01
00 1c 00 02 40 01""")
RFC8448_SERVER_HELLO_RECORD = h("""
16 03 03 00 5a 02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77
2e d3 e2 69 28 00 13 01 00 00 2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1 56 d6 cc
25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04""")
RFC8448_SERVER_FLIGHT_RECORD = h("""
17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a
a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd 05 d2 a3 89
28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07
16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b
3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6
10 92 8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94 5b a2 46 ab
66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea 52 0a
56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f 44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26
4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37
ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8
4d c3 bd 7e 1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da 8c 87
c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f
c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be 5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c
69 18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb 56 30 c8 ca
01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c
0b 3b 66 76 30 38 eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84
5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd
4a e3 79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e 75 0e dc 53 37 0d 2b""")
RFC8448_CLIENT_FINISHED_RECORD = h("""
17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03
38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46""")
RFC8448_TICKET_RECORD = h("""
17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80
dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c 73
53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29
99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13
46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12
1c 74 bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79 b3 7b f1 59 85 68 4f""")
RFC8448_CLIENT_APP_RECORD = h("""
17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4
6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4""")
RFC8448_SERVER_APP_RECORD = h("""
17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90
e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d""")
RFC8448_CLIENT_ALERT_RECORD = h("17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3")
RFC8448_SERVER_ALERT_RECORD = h("17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9")
RFC8448_APP_PAYLOAD = bytes(range(50))

RFC8448_SECRETS = SessionSecrets(
    client_random=RFC8448_CLIENT_HELLO[6:38],
    client_handshake_traffic_secret=h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21"),
    server_handshake_traffic_secret=h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38"),
    client_traffic_secret_0=h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5"),
    server_traffic_secret_0=h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643"),
)


def body(record: bytes) -> bytes:
    return record[5:]


def open_record(decryptor: RecordDecryptor, record: bytes) -> tuple[int, bytes]:
    return decryptor.decrypt(record[0], int.from_bytes(record[1:3], "big"), body(record))


def handshake_types(plaintext: bytes) -> list[int]:
    types, pos = [], 0
    while pos < len(plaintext):
        types.append(plaintext[pos])
        pos += 4 + int.from_bytes(plaintext[pos + 1:pos + 4], "big")
    assert pos == len(plaintext)
    return types


def test_hkdf_expand_label_rfc8448_traffic_keys() -> None:
    sha256 = hashes.SHA256()
    s = RFC8448_SECRETS
    expected = [
        (s.server_handshake_traffic_secret, "3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30"),
        (s.client_handshake_traffic_secret, "dbfaa693d1762c5b666af5d950258d01", "5bd3c71b836e0b76bb73265f"),
        (s.server_traffic_secret_0, "9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984"),
    ]
    for secret, key, iv in expected:
        assert secret is not None
        assert hkdf_expand_label(sha256, secret, "key", b"", 16).hex() == key
        assert hkdf_expand_label(sha256, secret, "iv", b"", 12).hex() == iv
    # RFC 8448: the server's finished_key.
    assert hkdf_expand_label(sha256, s.server_handshake_traffic_secret, "finished", b"", 32) == h(  # type: ignore[arg-type]
        "008d3b66f816ea559f96b537e885c31fc068bf492c652f01f288a1d8cdc19fc8")


def test_tls12_prf_known_answers() -> None:
    """The P_SHA256 and P_SHA384 vectors posted to the IETF TLS list (secret, "test label", seed)."""
    out = tls12_prf(hashes.SHA256(), h("9bbe436ba940f017b17652849a71db35"), b"test label",
                    h("a0ba9f936cda311827a6f796ffd5198c"), 100)
    assert out == h("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14ba"
                    "f9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a51"
                    "10fff70187347b66")
    out = tls12_prf(hashes.SHA384(), h("b80b733d6ceefcdc71566ea48e5567df"), b"test label",
                    h("cd665cf6a8447dd6ff8b27555edb7465"), 148)
    assert out == h("7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe34f82b1233c91"
                    "46a0e534cb400fed2700884f9dc236f80edd8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad0"
                    "5d9184259b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee691c8f3a26854308d5eaa"
                    "3be85e0990703d73e56f")


def test_rfc8448_records_decrypt_and_keys_follow_the_finished() -> None:
    server = RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.SERVER)
    assert server.key_phase == "handshake"
    inner, flight = open_record(server, RFC8448_SERVER_FLIGHT_RECORD)
    assert inner == m.HANDSHAKE and len(flight) == 657
    assert handshake_types(flight) == [m.ENCRYPTED_EXTENSIONS, m.CERTIFICATE, m.CERTIFICATE_VERIFY, m.FINISHED]
    assert server.key_phase == "application" and server.sequence == 0  # the Finished switched the keys
    inner, ticket = open_record(server, RFC8448_TICKET_RECORD)
    assert inner == m.HANDSHAKE and handshake_types(ticket) == [m.NEW_SESSION_TICKET]
    assert open_record(server, RFC8448_SERVER_APP_RECORD) == (m.APPLICATION_DATA, RFC8448_APP_PAYLOAD)
    assert open_record(server, RFC8448_SERVER_ALERT_RECORD) == (m.ALERT, b"\x01\x00")  # warning close_notify
    assert server.sequence == 3

    client = RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.CLIENT)
    inner, finished = open_record(client, RFC8448_CLIENT_FINISHED_RECORD)
    assert inner == m.HANDSHAKE and handshake_types(finished) == [m.FINISHED] and len(finished) == 36
    assert client.key_phase == "application"
    assert open_record(client, RFC8448_CLIENT_APP_RECORD) == (m.APPLICATION_DATA, RFC8448_APP_PAYLOAD)
    assert open_record(client, RFC8448_CLIENT_ALERT_RECORD) == (m.ALERT, b"\x01\x00")


def test_caller_can_drive_the_key_schedule() -> None:
    """With only the application secret logged, the decryptor starts there; `next_keys` moves through the
    schedule when the caller tracks the handshake itself."""
    app_only = SessionSecrets(client_random=RFC8448_SECRETS.client_random,
                              server_traffic_secret_0=RFC8448_SECRETS.server_traffic_secret_0)
    server = RecordDecryptor.for_tls13(app_only, 0x1301, Sender.SERVER)
    assert server.key_phase == "application"
    assert open_record(server, RFC8448_TICKET_RECORD)[0] == m.HANDSHAKE

    server = RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.SERVER)
    server.next_keys()
    assert server.key_phase == "application"
    assert open_record(server, RFC8448_TICKET_RECORD)[0] == m.HANDSHAKE
    server.next_keys()  # a KeyUpdate: the next records would be under application_traffic_secret_1
    assert server.key_updates == 1
    with pytest.raises(DecryptError):
        open_record(server, RFC8448_SERVER_APP_RECORD)


def test_missing_application_secret_is_named_in_the_error() -> None:
    """A failed handshake's key log often stops at the handshake secrets: the flight decrypts, what follows
    cannot, and the error says why."""
    handshake_only = SessionSecrets(client_random=RFC8448_SECRETS.client_random,
                                    server_handshake_traffic_secret=RFC8448_SECRETS.server_handshake_traffic_secret)
    server = RecordDecryptor.for_tls13(handshake_only, 0x1301, Sender.SERVER)
    assert open_record(server, RFC8448_SERVER_FLIGHT_RECORD)[0] == m.HANDSHAKE
    with pytest.raises(DecryptError, match="not in the key log"):
        open_record(server, RFC8448_TICKET_RECORD)


def test_early_sequence_applies_only_to_early_keys() -> None:
    """A client that offered 0-RTT without its early secret logged starts under its handshake keys at 0."""
    client = RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.CLIENT, early=True, initial_sequence=3)
    assert (client.key_phase, client.sequence) == ("handshake", 0)
    assert open_record(client, RFC8448_CLIENT_FINISHED_RECORD)[0] == m.HANDSHAKE


def test_lost_records_and_missed_key_changes_are_recovered() -> None:
    server = RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.SERVER)
    # The whole handshake flight was lost: the ticket still opens with the application keys.
    assert open_record(server, RFC8448_TICKET_RECORD)[0] == m.HANDSHAKE
    assert server.key_phase == "application"
    # The application data record was lost too: the alert opens one sequence number further on.
    assert open_record(server, RFC8448_SERVER_ALERT_RECORD) == (m.ALERT, b"\x01\x00")
    assert server.sequence == 3


def test_every_failure_is_one_decrypt_error() -> None:
    server = RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.SERVER)
    tampered = bytearray(RFC8448_SERVER_FLIGHT_RECORD)
    tampered[100] ^= 1
    with pytest.raises(DecryptError) as err:
        open_record(server, bytes(tampered))
    assert err.value.sequence == 0 and "authentication failed" in err.value.reason
    assert server.sequence == 0 and server.key_phase == "handshake"  # a failure changes nothing
    with pytest.raises(DecryptError):
        server.decrypt(23, 0x0303, b"\x00" * 10)  # shorter than the tag
    with pytest.raises(DecryptError):  # the other direction's keys
        open_record(RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.CLIENT), RFC8448_SERVER_FLIGHT_RECORD)
    with pytest.raises(DecryptError):  # the right keys for another suite
        open_record(RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1303, Sender.SERVER), RFC8448_SERVER_FLIGHT_RECORD)
    assert open_record(server, RFC8448_SERVER_FLIGHT_RECORD)[0] == m.HANDSHAKE  # still fine afterwards

    with pytest.raises(DecryptError):
        RecordDecryptor.for_tls13(RFC8448_SECRETS, 0xC02F, Sender.SERVER)  # a TLS 1.2 suite
    with pytest.raises(DecryptError):
        RecordDecryptor.for_tls13(SessionSecrets(client_random=bytes(32)), 0x1301, Sender.SERVER)  # nothing logged
    with pytest.raises(DecryptError):
        RecordDecryptor.for_tls12(bytes(48), bytes(32), bytes(32), 0x0005, Sender.CLIENT)  # RC4
    with pytest.raises(DecryptError):
        RecordDecryptor.for_tls12(bytes(48), bytes(32), bytes(32), 0x1301, Sender.CLIENT)  # a TLS 1.3 suite
    with pytest.raises(DecryptError):
        RecordDecryptor.for_tls12(bytes(48), bytes(32), bytes(32), 0xC02F, Sender.CLIENT, version=0x0300)  # SSL 3


def test_cipher_specs_of_common_suites() -> None:
    assert cipher_spec(0x1305).tag_len == 8  # type: ignore[union-attr]
    assert cipher_spec(0xC02F).explicit_nonce_len == 8 and cipher_spec(0xCCA8).fixed_iv_len == 12  # type: ignore[union-attr]
    assert cipher_spec(0xC028).mac_hash == "SHA384" and cipher_spec(0xC028).prf_hash == "SHA384"  # type: ignore[union-attr]
    assert cipher_spec(0x0005) is None and cipher_spec(0x000A) is None and cipher_spec(0xFFFF) is None


# --- the connection with a key log ------------------------------------------------------------------------------

def rfc8448_chunks() -> list[tuple[Sender, bytes]]:
    client_hello = b"\x16\x03\x01" + len(RFC8448_CLIENT_HELLO).to_bytes(2, "big") + RFC8448_CLIENT_HELLO
    return [
        (Sender.CLIENT, client_hello),
        (Sender.SERVER, RFC8448_SERVER_HELLO_RECORD + RFC8448_SERVER_FLIGHT_RECORD),
        (Sender.CLIENT, RFC8448_CLIENT_FINISHED_RECORD),
        (Sender.SERVER, RFC8448_TICKET_RECORD),
        (Sender.CLIENT, RFC8448_CLIENT_APP_RECORD),
        (Sender.SERVER, RFC8448_SERVER_APP_RECORD),
        (Sender.CLIENT, RFC8448_CLIENT_ALERT_RECORD),
        (Sender.SERVER, RFC8448_SERVER_ALERT_RECORD),
    ]


def rfc8448_keylog() -> KeyLog:
    s = RFC8448_SECRETS
    cr = s.client_random.hex()
    return KeyLog.from_text(
        f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {cr} {s.client_handshake_traffic_secret.hex()}\n"  # type: ignore[union-attr]
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {cr} {s.server_handshake_traffic_secret.hex()}\n"  # type: ignore[union-attr]
        f"CLIENT_TRAFFIC_SECRET_0 {cr} {s.client_traffic_secret_0.hex()}\n"  # type: ignore[union-attr]
        f"SERVER_TRAFFIC_SECRET_0 {cr} {s.server_traffic_secret_0.hex()}\n")  # type: ignore[union-attr]


def short(events: list[Event]) -> list[tuple]:
    """Handshake messages and alerts, as (sender, kind, type, decrypted)."""
    out: list[tuple] = []
    for e in events:
        if isinstance(e, HandshakeSeen):
            out.append((e.sender.value[0], "hs", e.msg_type, e.decrypted))
        elif isinstance(e, AlertSeen):
            out.append((e.sender.value[0], "alert", e.description, e.decrypted))
    return out


def unframed(events: list[Event]) -> list[Event]:
    return [dataclasses.replace(e, frame=0, ts=0.0) for e in events]


def anomalies(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, e.detail) for e in events if isinstance(e, ParseAnomaly)]


@pytest.mark.parametrize("split", [None, 1, 7])
def test_rfc8448_trace_through_the_connection(split: int | None) -> None:
    events = feed(TlsConnection(keylog=rfc8448_keylog()), rfc8448_chunks(), split=split)
    assert anomalies(events) == []
    assert unframed(events) == unframed(feed(TlsConnection(keylog=rfc8448_keylog()), rfc8448_chunks()))
    assert short(events) == [
        ("c", "hs", m.CLIENT_HELLO, False), ("s", "hs", m.SERVER_HELLO, False),
        ("s", "hs", m.ENCRYPTED_EXTENSIONS, True), ("s", "hs", m.CERTIFICATE, True),
        ("s", "hs", m.CERTIFICATE_VERIFY, True), ("s", "hs", m.FINISHED, True), ("c", "hs", m.FINISHED, True),
        ("s", "hs", m.NEW_SESSION_TICKET, True), ("c", "alert", 0, True), ("s", "alert", 0, True),
    ]
    cert = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.CERTIFICATE)
    assert isinstance(cert, Certificate)
    assert x509.load_der_x509_certificate(cert.certificates[0]).subject.rfc4514_string() == "CN=rsa"
    # The encrypted records are still reported as such, each once.
    assert sum(isinstance(e, EncryptedRecordSeen) for e in events) == 7


def test_decryption_only_adds_events() -> None:
    """With the key log, the keyless events are all still there, in the same order."""
    keyless = feed(TlsConnection(), rfc8448_chunks())
    keyed = feed(TlsConnection(keylog=rfc8448_keylog()), rfc8448_chunks())
    assert [e for e in keyed if not getattr(e, "decrypted", False)] == keyless


def test_wrong_keys_give_one_anomaly_then_the_keyless_events() -> None:
    s = RFC8448_SECRETS
    wrong = KeyLog.from_text(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {s.client_random.hex()} {bytes(32).hex()}\n"
                             f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {s.client_random.hex()} {bytes(32).hex()}\n")
    events = feed(TlsConnection(keylog=wrong), rfc8448_chunks())
    failed = [e for e in events if isinstance(e, ParseAnomaly)]
    assert [e.name for e in failed] == ["decryption_failed"] and failed[0].sender is Sender.SERVER
    assert [e for e in events if not isinstance(e, ParseAnomaly)] == feed(TlsConnection(), rfc8448_chunks())


def test_secrets_for_another_connection_change_nothing() -> None:
    other = KeyLog.from_text(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {bytes(32).hex()} {bytes(32).hex()}\n")
    assert feed(TlsConnection(keylog=other), rfc8448_chunks()) == feed(TlsConnection(), rfc8448_chunks())


# --- live handshakes with Python's ssl ----------------------------------------------------------------------------

NO_ENCRYPT_THEN_MAC = 0x00080000  # SSL_OP_NO_ENCRYPT_THEN_MAC: forces MAC-then-encrypt for CBC suites

LIVE_CASES = [
    # (version, OpenSSL cipher string, extra options)
    (ssl.TLSVersion.TLSv1_3, None, 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-GCM-SHA384", 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-CCM", 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-CCM8", 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA", 0),  # CBC, encrypt-then-MAC negotiated
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA", NO_ENCRYPT_THEN_MAC),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256", 0),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-SHA384", NO_ENCRYPT_THEN_MAC),
    (ssl.TLSVersion.TLSv1_1, "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0", 0),
    (ssl.TLSVersion.TLSv1, "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", NO_ENCRYPT_THEN_MAC),  # implicit CBC IVs
]


def live(tls_contexts, tmp_path: Path, version: ssl.TLSVersion, ciphers: str | None,  # type: ignore[no-untyped-def]
         options: int, **kwargs: object) -> tuple[list[tuple[Sender, bytes]], KeyLog]:
    client, server = tls_contexts(version=version, ciphers=ciphers, **kwargs)
    for ctx in (client, server):
        ctx.options |= options
    client.keylog_filename = str(tmp_path / "keys.log")
    transcript = run_tls(client, server)
    return transcript.chunks, KeyLog.from_file(tmp_path / "keys.log")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("version", "ciphers", "options"), LIVE_CASES,
                         ids=[f"{v.name}-{c}-{o:x}" for v, c, o in LIVE_CASES])
def test_live_handshake_decrypts(tls_contexts, tmp_path: Path, version: ssl.TLSVersion,  # type: ignore[no-untyped-def]
                                 ciphers: str | None, options: int) -> None:
    try:
        chunks, keylog = live(tls_contexts, tmp_path, version, ciphers, options)
    except ssl.SSLError as err:  # an OpenSSL build without that version or suite
        pytest.skip(f"OpenSSL refused the configuration: {err}")
    conn = TlsConnection(keylog=keylog)
    events = feed(conn, chunks)
    if conn.version != version.value:
        pytest.skip(f"OpenSSL did not negotiate {version.name}")
    assert anomalies(events) == []
    decrypted = [item for item in short(events) if item[3]]
    if version is ssl.TLSVersion.TLSv1_3:
        assert decrypted[:5] == [("s", "hs", m.ENCRYPTED_EXTENSIONS, True), ("s", "hs", m.CERTIFICATE, True),
                                 ("s", "hs", m.CERTIFICATE_VERIFY, True), ("s", "hs", m.FINISHED, True),
                                 ("c", "hs", m.FINISHED, True)]
    else:
        assert sorted(decrypted) == [("c", "hs", m.FINISHED, True), ("s", "hs", m.FINISHED, True)]
    finished = [e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.FINISHED]
    assert all(len(f.verify_data) in (12, 32, 48) for f in finished)  # type: ignore[union-attr]
    # Byte by byte, the same events (only the frame numbers, which count the pieces fed, differ).
    assert unframed(feed(TlsConnection(keylog=keylog), chunks, split=1)) == unframed(events)


def records(stream: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos + 5 <= len(stream):
        length = int.from_bytes(stream[pos + 3:pos + 5], "big")
        out.append((stream[pos], int.from_bytes(stream[pos + 1:pos + 3], "big"), stream[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("version", "ciphers", "options"), [case for case in LIVE_CASES if case[1]],
                         ids=[f"{v.name}-{c}-{o:x}" for v, c, o in LIVE_CASES if c])
def test_live_tls12_records_decrypt_in_sequence(tls_contexts, tmp_path: Path, version: ssl.TLSVersion,  # type: ignore[no-untyped-def]
                                                ciphers: str, options: int) -> None:
    """The decryptor alone on each direction's records after its ChangeCipherSpec: the Finished, then the
    application data each side wrote (b"ping"), so sequence numbers, MACs and (TLS 1.0) chained IVs hold across
    records."""
    try:
        chunks, keylog = live(tls_contexts, tmp_path, version, ciphers, options)
    except ssl.SSLError as err:
        pytest.skip(f"OpenSSL refused the configuration: {err}")
    conn = TlsConnection()
    feed(conn, chunks)
    assert conn.client_hello is not None and conn.server_hello is not None and conn.version is not None
    secrets = keylog.secrets_for(conn.client_hello.random)
    assert secrets is not None and secrets.master_secret is not None
    etm = conn.client_hello.has_extension(0x0016) and conn.server_hello.has_extension(0x0016)
    for sender in Sender:
        stream = b"".join(data for who, data in chunks if who is sender)
        after_ccs = list(records(stream))
        after_ccs = after_ccs[[r[0] for r in after_ccs].index(m.CHANGE_CIPHER_SPEC) + 1:]
        decryptor = RecordDecryptor.for_tls12(secrets.master_secret, conn.client_hello.random,
                                              conn.server_hello.random, conn.server_hello.cipher_suite, sender,
                                              version=conn.version, encrypt_then_mac=etm)
        opened = [decryptor.decrypt(ct, ver, body) for ct, ver, body in after_ccs]
        assert opened[0][0] == m.HANDSHAKE and opened[0][1][0] == m.FINISHED
        assert (m.APPLICATION_DATA, b"ping") in opened[1:]
        assert decryptor.sequence == len(after_ccs)


def test_live_tls13_missing_client_certificate_alert_is_read(tls_contexts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """TLS 1.3 server requiring a certificate the client does not have: its certificate_required alert is sent
    under the server's application keys, unreadable without the key log."""
    chunks, keylog = live(tls_contexts, tmp_path, ssl.TLSVersion.TLSv1_3, None, 0, require_client_cert=True)
    events = feed(TlsConnection(keylog=keylog), chunks)
    assert anomalies(events) == []
    alerts = [e for e in events if isinstance(e, AlertSeen)]
    assert [(a.sender, a.level, a.description, a.decrypted) for a in alerts] == [(Sender.SERVER, 2, 116, True)]
    assert not any(isinstance(e, AlertSeen) for e in feed(TlsConnection(), chunks))
    client_msgs = [e.msg_type for e in events if isinstance(e, HandshakeSeen) and e.sender is Sender.CLIENT]
    assert client_msgs == [m.CLIENT_HELLO, m.CERTIFICATE, m.FINISHED]  # an empty Certificate, then Finished


# --- real captures ------------------------------------------------------------------------------------------------

def parse_capture(path: Path, keylog: KeyLog | None) -> list[tuple[object, list[Event]]]:
    """(tcp Connection, parser events) per connection, through the project's capture reader and reassembler."""
    flows: dict[int, tuple[object, TlsConnection, list[Event]]] = {}
    with open_capture(path) as cap:
        if keylog is None and cap.secrets:
            keylog = KeyLog.from_blocks(cap.secrets)
        reassembler = TcpReassembler()

        def take(tcp_events: list) -> None:  # type: ignore[type-arg]
            for event in tcp_events:
                if isinstance(event, ConnectionOpened):
                    flows[id(event.conn)] = (event.conn, TlsConnection(keylog=keylog), [])
                elif isinstance(event, StreamChunk):
                    _, tls, out = flows[id(event.conn)]
                    if event.gap:
                        out.extend(tls.receive_gap(event.sender, event.gap, event.frame, event.ts))
                    else:
                        out.extend(tls.receive(event.sender, event.data, event.frame, event.ts))

        for packet in cap.packets():
            take(reassembler.add(packet))
        take(reassembler.finish())
    return [(conn, events) for conn, _, events in flows.values()]


def tshark_style(conn, events: list[Event]) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """Handshake types and alert descriptions as `c:1`, `s:2`, ... (a HelloRetryRequest is a ServerHello, 2,
    as tshark counts it; tlsparse reports it as 6)."""
    def side(e: Event) -> str:
        return "c" if e.sender is Sender.CLIENT else "s"

    hs = [f"{side(e)}:{m.SERVER_HELLO if e.msg_type == m.HELLO_RETRY_REQUEST else e.msg_type}"
          for e in events if isinstance(e, HandshakeSeen)]
    alerts = [f"{side(e)}:{e.description}" for e in events if isinstance(e, AlertSeen)]
    return hs, alerts


def ssldump_cases() -> list[dict]:
    path = KEYLOG_DIR / "expected.jsonl"
    if not path.is_file():
        return []
    return [json.loads(text) for text in path.read_text().splitlines() if text.strip()]


@pytest.mark.skipif(not (KEYLOG_DIR / "expected.jsonl").is_file(), reason="shared keylog captures not present")
@pytest.mark.parametrize("case", ssldump_cases(), ids=lambda c: c["file"])
def test_published_keylog_captures_agree_with_tshark(case: dict) -> None:
    keylog = KeyLog.from_file(KEYLOG_DIR / case["keylog"])
    flows = [(conn, events) for conn, events in parse_capture(KEYLOG_DIR / case["file"], keylog)
             if f"{conn.client_ip}:{conn.client_port}" == case["client"]]  # type: ignore[attr-defined]
    assert len(flows) == 1
    conn, events = flows[0]
    assert anomalies(events) == []
    assert tshark_style(conn, events) == (case["handshake_types"], case["alert_descriptions"])


def corpus_with_keylogs() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.pcap") if p.with_suffix(".keylog").is_file())


@pytest.mark.parametrize("pcap", corpus_with_keylogs(), ids=lambda p: p.name)
def test_corpus_decrypts_cleanly_and_only_adds_events(pcap: Path) -> None:
    keylog = KeyLog.from_file(pcap.with_suffix(".keylog"))
    keyed = parse_capture(pcap, keylog)
    keyless = parse_capture(pcap, KeyLog())
    assert len(keyed) == len(keyless)
    for (conn, events), (_, plain) in zip(keyed, keyless):
        assert not [a for a in anomalies(events) if a[0].startswith("decryption")]

        def kept(evs: list[Event]) -> list[Event]:  # a decrypted TLS 1.2 alert replaces the opaque one
            return [e for e in evs if not getattr(e, "decrypted", False)
                    and not (isinstance(e, AlertSeen) and e.encrypted)]

        assert kept(events) == kept(plain)
        hs = [e for e in events if isinstance(e, HandshakeSeen)]
        server_hello = next((e.message for e in hs if e.msg_type == m.SERVER_HELLO), None)
        client_hello = next((e.message for e in hs if e.msg_type == m.CLIENT_HELLO), None)
        if server_hello is None or client_hello is None or keylog.secrets_for(client_hello.random) is None:
            continue
        if server_hello.selected_version == 0x0304:  # type: ignore[union-attr]
            assert any(e.decrypted and e.msg_type == m.ENCRYPTED_EXTENSIONS for e in hs)
        # Every side that went encrypted had its first encrypted handshake record read.
        for sender in Sender:
            if any(isinstance(e, EncryptedRecordSeen) and e.sender is sender and e.content_type == m.HANDSHAKE
                   for e in plain):
                assert any(e.decrypted and e.sender is sender and e.msg_type == m.FINISHED for e in hs)


def corpus_case(name: str) -> list[tuple[object, list[Event]]]:
    pcap = CORPUS / f"{name}.pcap"
    if not pcap.with_suffix(".keylog").is_file():
        pytest.skip(f"{name} has no key log")
    return parse_capture(pcap, KeyLog.from_file(pcap.with_suffix(".keylog")))


def test_corpus_missing_client_certificate_alert_is_certificate_required() -> None:
    (_, events), = corpus_case("tls13_client_cert_missing")
    alerts = [(e.sender, e.level, e.description, e.decrypted) for e in events if isinstance(e, AlertSeen)]
    assert alerts == [(Sender.SERVER, 2, 116, True)]


def test_corpus_hostname_mismatch_certificate_is_readable() -> None:
    (_, events), = corpus_case("tls13_cert_hostname_mismatch")
    hello = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.CLIENT_HELLO)
    certs = [e for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.CERTIFICATE]
    assert len(certs) == 1 and certs[0].decrypted and certs[0].sender is Sender.SERVER
    leaf = x509.load_der_x509_certificate(certs[0].message.certificates[0])  # type: ignore[union-attr]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert hello.sni and hello.sni not in names  # type: ignore[union-attr]


def tshark_decrypted(pcap: Path, keylog: Path) -> dict[int, tuple[list[tuple[int, str]], list[tuple[int, str]]]]:
    """Per TCP stream: (source port, handshake type) and (source port, alert description), in frame order."""
    out = subprocess.run(
        [TSHARK, "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-Y", "tls", "-T", "fields",
         "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tls.handshake.type", "-e", "tls.alert_message.desc"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    streams: dict[int, tuple[list[tuple[int, str]], list[tuple[int, str]]]] = {}
    for row in out.splitlines():
        stream, port, types, alerts = (row.split("\t") + ["", "", "", ""])[:4]
        hs, al = streams.setdefault(int(stream), ([], []))
        hs.extend((int(port), t) for t in types.split(",") if t)
        al.extend((int(port), a) for a in alerts.split(",") if a)
    return streams


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("pcap", corpus_with_keylogs(), ids=lambda p: p.name)
def test_corpus_agrees_with_tshark_decryption(pcap: Path) -> None:
    keylog = pcap.with_suffix(".keylog")
    ours = parse_capture(pcap, KeyLog.from_file(keylog))
    theirs = tshark_decrypted(pcap, keylog)
    compared = 0
    for conn, events in ours:
        port = conn.client_port  # type: ignore[attr-defined]
        matching = [v for v in theirs.values() if any(p == port for p, _ in v[0] + v[1])]
        if not matching:
            continue  # no TLS seen by tshark on that connection
        hs, al = matching[0]
        expected = ([f"{'c' if p == port else 's'}:{t}" for p, t in hs],
                    [f"{'c' if p == port else 's'}:{a}" for p, a in al])
        assert tshark_style(conn, events) == expected
        compared += 1
    assert compared >= 1


# --- 0-RTT with OpenSSL's command-line tools (loopback only) ------------------------------------------------------

OPENSSL = shutil.which("openssl")


def relay_one_connection(listener: socket.socket, target: int, chunks: list[tuple[Sender, bytes]],
                         timeout: float = 10.0) -> None:
    """Accept one connection, forward it to `target`, record what each side wrote in the order it arrived."""
    listener.settimeout(timeout)
    client, _ = listener.accept()
    upstream = socket.create_connection(("127.0.0.1", target), timeout=timeout)
    peers = {client: (upstream, Sender.CLIENT), upstream: (client, Sender.SERVER)}
    open_sides = set(peers)
    deadline = time.monotonic() + timeout
    while open_sides and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_sides), [], [], 0.2)
        for sock in ready:
            peer, sender = peers[sock]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                open_sides.discard(sock)
                with contextlib.suppress(OSError):
                    peer.shutdown(socket.SHUT_WR)
                continue
            chunks.append((sender, data))
            peer.sendall(data)
    client.close()
    upstream.close()


def start_s_server(pki, *extra: str) -> tuple[subprocess.Popen, int]:  # type: ignore[no-untyped-def,type-arg]
    server = subprocess.Popen([OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-cert", str(pki.server_chain),
                               "-key", str(pki.server_key), "-tls1_3", *extra], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert server.stdout is not None
    for text in server.stdout:  # "ACCEPT 127.0.0.1:port" once listening
        if text.startswith("ACCEPT"):
            return server, int(text.strip().rsplit(":", 1)[1])
    server.kill()
    server.wait(timeout=10)
    raise AssertionError("s_server did not start")


def run_s_client(*args: str) -> None:
    client = subprocess.Popen([OPENSSL, "s_client", "-tls1_3", *args], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # session tickets come after the handshake: closing stdin at once would end s_client first
    assert client.stdin is not None
    client.stdin.close()
    client.wait(timeout=10)


def openssl_zero_rtt(pki, tmp_path: Path, *, server_accepts: bool) -> list[tuple[Sender, bytes]]:  # type: ignore[no-untyped-def]
    """A TLS 1.3 connection attempting early data: s_client (sess_in, early_data, keylogfile) -> recording relay
    -> s_server. The session comes from a first connection to an s_server allowing early data; the server of the
    recorded connection is that one (accepted) or a fresh one that cannot read the ticket (rejected: a full
    handshake). Returns the relayed bytes; the key log is tmp_path/keys.log."""
    servers = []
    listener = socket.create_server(("127.0.0.1", 0))
    chunks: list[tuple[Sender, bytes]] = []
    try:
        server, port = start_s_server(pki, "-early_data", "-naccept", "2")
        servers.append(server)
        run_s_client("-connect", f"127.0.0.1:{port}", "-sess_out", str(tmp_path / "session.pem"))
        if not server_accepts:
            server, port = start_s_server(pki, "-naccept", "1")
            servers.append(server)
        (tmp_path / "early.txt").write_text("GET / HTTP/1.0\r\n\r\n")
        relay = threading.Thread(target=relay_one_connection, args=(listener, port, chunks), daemon=True)
        relay.start()
        run_s_client("-connect", f"127.0.0.1:{listener.getsockname()[1]}", "-sess_in", str(tmp_path / "session.pem"),
                     "-early_data", str(tmp_path / "early.txt"), "-keylogfile", str(tmp_path / "keys.log"))
        relay.join(timeout=15)
    finally:
        listener.close()
        for server in servers:
            server.kill()
            server.wait(timeout=10)
    return chunks


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize("server_accepts", [True, False], ids=["accepted", "rejected"])
def test_openssl_zero_rtt(pki, tmp_path: Path, server_accepts: bool) -> None:  # type: ignore[no-untyped-def]
    chunks = openssl_zero_rtt(pki, tmp_path, server_accepts=server_accepts)
    keylog = KeyLog.from_file(tmp_path / "keys.log")
    conn = TlsConnection(keylog=keylog)
    events = feed(conn, chunks)
    hello = conn.client_hello
    assert hello is not None and hello.has_extension(m.EXT_EARLY_DATA)
    if keylog.secrets_for(hello.random) is None or keylog.secrets_for(hello.random).client_early_traffic_secret is None:  # type: ignore[union-attr]
        pytest.skip("OpenSSL did not attempt 0-RTT (no early traffic secret logged)")
    assert anomalies(events) == []
    client = [e.msg_type for e in events if isinstance(e, HandshakeSeen) and e.sender is Sender.CLIENT]
    server = [e.msg_type for e in events if isinstance(e, HandshakeSeen) and e.sender is Sender.SERVER]
    ee = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.ENCRYPTED_EXTENSIONS)
    assert ee.has_extension(m.EXT_EARLY_DATA) is server_accepts  # type: ignore[union-attr]
    if server_accepts:  # resumed: no certificate; the early data ends with EndOfEarlyData under the early keys
        assert server[:3] == [m.SERVER_HELLO, m.ENCRYPTED_EXTENSIONS, m.FINISHED]
        assert client == [m.CLIENT_HELLO, m.END_OF_EARLY_DATA, m.FINISHED]
    else:  # the early data is skipped (it does not open with the handshake keys), then a full handshake
        assert server[:5] == [m.SERVER_HELLO, m.ENCRYPTED_EXTENSIONS, m.CERTIFICATE, m.CERTIFICATE_VERIFY,
                              m.FINISHED]
        assert client == [m.CLIENT_HELLO, m.FINISHED]


# --- properties -------------------------------------------------------------------------------------------------

def any_decryptor(kind: str) -> RecordDecryptor:
    master, cr, sr = bytes(range(48)), bytes(32), bytes(range(32))
    if kind == "tls13":
        return RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1301, Sender.SERVER)
    if kind == "tls13-ccm8":
        return RecordDecryptor.for_tls13(RFC8448_SECRETS, 0x1305, Sender.SERVER)
    suites = {"gcm": (0xC02F, False, 0x0303), "chacha": (0xCCA8, False, 0x0303), "cbc": (0xC013, False, 0x0303),
              "cbc-etm": (0xC027, True, 0x0303), "cbc-tls10": (0xC014, False, 0x0301), "null": (0x003B, False, 0x0303),
              "ccm8": (0xC0AE, False, 0x0303)}
    suite, etm, version = suites[kind]
    return RecordDecryptor.for_tls12(master, cr, sr, suite, Sender.CLIENT, version=version, encrypt_then_mac=etm)


DECRYPTOR_KINDS = ["tls13", "tls13-ccm8", "gcm", "chacha", "cbc", "cbc-etm", "cbc-tls10", "null", "ccm8"]


@given(kind=st.sampled_from(DECRYPTOR_KINDS), content_type=st.integers(0, 255), version=st.integers(0, 0xFFFF),
       data=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_records_only_ever_raise_decrypt_error(kind: str, content_type: int, version: int,
                                                         data: bytes) -> None:
    decryptor = any_decryptor(kind)
    before = decryptor.sequence
    try:
        decryptor.decrypt(content_type, version, data)
    except DecryptError:
        assert decryptor.sequence == before  # a record that does not decrypt leaves the state alone
    else:
        assert kind == "null"  # only the MAC-only suite could ever accept forged bytes (with a valid MAC: never)


@given(record=st.integers(1, 7), position=st.integers(0, 2000), flip=st.integers(1, 255))
@settings(max_examples=200, deadline=None)
def test_damaged_records_never_break_the_connection(record: int, position: int, flip: int) -> None:
    chunks = rfc8448_chunks()
    sender, data = chunks[record]
    damaged = bytearray(data)
    damaged[5 + position % (len(data) - 5)] ^= flip  # anywhere after the chunk's first record header
    chunks[record] = (sender, bytes(damaged))
    events = feed(TlsConnection(keylog=rfc8448_keylog()), chunks)
    names = [name for name, _ in anomalies(events)]
    assert "internal_error" not in names
    assert names.count("decryption_failed") <= 1
