"""The shortcuts of the per-connection work after the parser give what the plain code gives.

Each shortcut (fingerprints remembered per hello shape, the JSON lines encoder, ...) is compared with the plain
computation on every connection of the shipped corpus and of the public captures (when present), plus hand-built
edge cases.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS, PUBLIC
from tests.tlsparse.test_fingerprints import alpn_body, doc_hello
from tlsflow.pipeline import FlowAnalyzer
from tlsparse.fingerprints import HelloFingerprints, ja3, ja3s, ja4
from tlsparse.messages import EXT_ALPN, EXT_SUPPORTED_GROUPS, Extension


class _KeepingAnalyzer(FlowAnalyzer):
    """Keeps each closed connection (summary and TCP facts) beside its record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: list[tuple[Any, dict[str, Any]]] = []

    def _record(self, conn: Any) -> dict[str, Any]:
        record = super()._record(conn)
        self.closed.append((conn, record))
        return record


def _captures() -> list[Path]:
    found = sorted(p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    if PUBLIC.is_dir():
        found += sorted(p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    return found


def _analyse(path: Path) -> _KeepingAnalyzer:
    from analyzers.certchecks import TrustStore
    from tlsflow.capture import CaptureError, open_capture
    from tlsparse.keylog import KeyLog

    keylog_path = path.with_suffix(".keylog")
    keylog = KeyLog.from_file(keylog_path) if keylog_path.exists() else None
    trust = TrustStore.default()
    if path.parent == CORPUS:
        trust = trust.with_pem_file(str(CORPUS / "ca.pem"))
    analyzer = _KeepingAnalyzer(str(path), trust=trust, keylog=keylog)
    with open_capture(path) as cap:
        try:
            for pkt in cap.packets(count_only=analyzer.reassembler.count_only):
                if pkt.__class__ is float:
                    analyzer.last_ts = pkt
                    continue
                for _ in analyzer.feed(pkt):
                    pass
        except CaptureError:
            pass  # a damaged capture: the connections seen before the damage are kept
    for _ in analyzer.finish():
        pass
    return analyzer


@pytest.fixture(scope="module")
def analysed() -> list[_KeepingAnalyzer]:
    return [_analyse(p) for p in _captures()]


@pytest.fixture(scope="module")
def summaries(analysed: list[_KeepingAnalyzer]) -> list[Any]:
    out = [conn.handshake.summary for a in analysed for conn, _ in a.closed if conn.handshake is not None]
    assert out, "no connection in the corpus"
    return out


# ---------------------------------------------------------------- fingerprints per hello shape


def test_remembered_fingerprints_equal_the_computed_ones_on_every_hello(summaries: list[Any]) -> None:
    memo = HelloFingerprints()
    hellos = servers = 0
    for s in summaries:
        for at in s.client_hellos:
            ch = at.message
            pair = ja3(ch)
            assert memo.client(ch) == ((pair[0] if pair else None), ja4(ch))
            hellos += 1
        if s.server_hello_msg is not None:
            assert memo.server(s.server_hello_msg) == ja3s(s.server_hello_msg)[0]
            servers += 1
    assert hellos and servers
    # Same-shape hellos were answered from the memo: fewer shapes than hellos.
    assert len(memo._client) < hellos and len(memo._server) < servers


def test_hellos_that_differ_where_fingerprints_do_not_look_share_an_entry() -> None:
    memo = HelloFingerprints()
    first = doc_hello()
    other = replace(first, random=b"\x01" * 32, session_id=b"\x02" * 32)
    assert memo.client(first) == memo.client(other) == (ja3(first)[0], ja4(first))
    assert len(memo._client) == 1


def _with_extension(ch: Any, ext: Extension) -> Any:
    return replace(ch, extensions=tuple(ext if e.type == ext.type else e for e in ch.extensions))


@pytest.mark.parametrize("changed", [
    # the same raw bytes with another decoded value (hand-built), and the other way round
    Extension(type=EXT_SUPPORTED_GROUPS, data=b"", parsed=(0x001D,)),
    Extension(type=EXT_SUPPORTED_GROUPS, data=b"\x00\x02\x00\x17", parsed=None),
    Extension(type=EXT_ALPN, data=alpn_body([b"http/1.1"]), parsed=("http/1.1",)),
])
def test_a_changed_fingerprinted_extension_gets_its_own_fingerprints(changed: Extension) -> None:
    memo = HelloFingerprints()
    base = doc_hello()
    variant = _with_extension(base, changed)
    memo.client(base)
    assert memo.client(variant) == (ja3(variant)[0], ja4(variant))
    assert memo.client(variant) != memo.client(base)


def test_unhashable_decoded_values_are_fingerprinted_without_the_memo() -> None:
    memo = HelloFingerprints()
    listed = _with_extension(doc_hello(), Extension(type=EXT_SUPPORTED_GROUPS, data=b"", parsed=[0x001D, 0x0017]))
    assert memo.client(listed) == (ja3(listed)[0], ja4(listed))
    assert not memo._client


def test_sslv2_hellos_keep_a_null_ja3() -> None:
    memo = HelloFingerprints()
    v2 = replace(doc_hello(), sslv2=True, extensions=())
    assert memo.client(v2) == (None, ja4(v2))
    assert memo.client(replace(v2, sslv2=False))[0] is not None
