"""The readers' fast lane beyond untagged Ethernet/IPv4.

Frames with an 802.1Q tag (a SPAN port or TAP on a trunk): the lane follows the tagging instead of sending every
tagged frame through the full decoder. Before: a tagged 200 MB bench capture took 2.1 s against 1.3-1.5 s untagged
(pcap), 1.95 s against 1.25 s (pcapng); now 1.25-1.45 s either way, the same records.
IPv6 segments without extension headers: counted in the lane, or built by the walker, as the IPv4 ones. The 200 MB
capture over IPv6 took 1.85-2.06 s against 1.29-1.49 s over IPv4; now 1.46-1.49 s, the same records.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import loopback_captures
from tlsflow.pipeline import iter_flow_records

from .pcap_edit import as_ipv6, tagged

TAGGINGS = {
    "every frame": None,
    "first half": lambda index: index < 40,  # tagged, then untagged: the walker switches back
    "alternating runs": lambda index: (index // 7) % 2 == 0,
}


def _same(path: Path) -> list[dict]:
    return [{**r, "capture": None} for r in iter_flow_records(path)]


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize("tagging", list(TAGGINGS))
def test_tagged_corpus_gives_the_same_records(corpus_dir: Path, tmp_path: Path, tagging: str, pcapng: bool) -> None:
    """Real clients and servers (tcpdump on loopback), their frames re-tagged: the records of each capture are
    those of the untagged one."""
    captures = loopback_captures(corpus_dir)
    assert len(captures) >= 70
    for capture in captures:
        copy = tagged(capture, tmp_path / (capture.stem + (".pcapng" if pcapng else ".pcap")),
                      tag=TAGGINGS[tagging], pcapng=pcapng)
        assert _same(copy) == _same(capture), capture.name


def _count_handed(monkeypatch) -> dict[str, int]:
    """Counts the frames the walkers hand to the full decoder (the handlers of decode.make_handlers)."""
    from tlsflow.capture import reader

    handed = {"n": 0}
    make_handlers = reader.make_handlers

    def counting_handlers(*args, **kwargs):
        handler_for = make_handlers(*args, **kwargs)

        def counted_for(link):
            handler = handler_for(link)

            def counted(*frame_args):
                handed["n"] += 1
                return handler(*frame_args)

            counted.tcp_packet_builder = handler.tcp_packet_builder  # type: ignore[attr-defined]
            return counted

        return counted_for

    monkeypatch.setattr(reader, "make_handlers", counting_handlers)
    return handed


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_tagged_frames_take_the_fast_lane(generated_capture: Path, tmp_path: Path, monkeypatch, pcapng: bool) -> None:
    """A bench capture (48 connections at a time, mostly application data), every frame tagged: the walker hands
    no more frames to the full decoder than untagged (one, where it meets the tag), and the records are the
    same."""
    handed = _count_handed(monkeypatch)
    plain = _same(generated_capture)
    untagged, handed["n"] = handed["n"], 0
    copy = tagged(generated_capture, tmp_path / ("t.pcapng" if pcapng else "t.pcap"), pcapng=pcapng)
    assert _same(copy) == plain
    assert handed["n"] <= untagged + 1


def _without_ipv6_lane(monkeypatch) -> None:
    """The readers' IPv6 fast lane off: every IPv6 segment takes the full decoder, as before it existed."""
    from tlsflow.capture import pcap

    monkeypatch.setattr(pcap, "ETHERTYPE_IPV6", -1)  # (pcap.ipv6_lane, for both walkers)


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_ipv6_fast_lane_gives_the_decoders_records(corpus_dir: Path, tmp_path: Path, monkeypatch,
                                                    pcapng: bool) -> None:
    """Real clients and servers (tcpdump on loopback), their segments carried over IPv6: the records with the
    readers' IPv6 fast lane are those of the full decoder, and they are IPv6 endpoints."""
    captures = loopback_captures(corpus_dir)
    copies = [as_ipv6(p, tmp_path / (p.stem + (".pcapng" if pcapng else ".pcap")), pcapng=pcapng) for p in captures]
    fast = [_same(copy) for copy in copies]
    with monkeypatch.context() as patch:
        _without_ipv6_lane(patch)
        assert [_same(copy) for copy in copies] == fast
    assert all(r["client"].startswith("[2001:db8::") for rows in fast for r in rows)
    # And the verdicts are those of the IPv4 captures.
    for capture, rows in zip(captures, fast):
        assert [(r["outcome"], r["cause"], r["history"]) for r in rows] == [
            (r["outcome"], r["cause"], r["history"]) for r in iter_flow_records(capture)], capture.name


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_ipv6_segments_take_the_fast_lane(generated_capture: Path, tmp_path: Path, monkeypatch, pcapng: bool) -> None:
    """The bench capture over IPv6: most segments are counted without the full decoder (before: every one took
    it), and the records are the decoder's."""
    handed = _count_handed(monkeypatch)
    copy = as_ipv6(generated_capture, tmp_path / ("v6.pcapng" if pcapng else "v6.pcap"), pcapng=pcapng)
    fast = _same(copy)
    with_lane, handed["n"] = handed["n"], 0
    with monkeypatch.context() as patch:
        _without_ipv6_lane(patch)
        assert _same(copy) == fast
    assert with_lane * 3 < handed["n"], (with_lane, handed["n"])
