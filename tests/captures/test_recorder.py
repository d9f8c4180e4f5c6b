"""The labelled corpus and its recorder: committed labels are well formed and hold on their own captures
(read by tshark), and re-recording a few fast scenarios still gives the committed labels."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from captures.labels import check_label, read_labels, read_wire, read_wires
from captures.record import assign_ports, discover, record
from captures.scenario import CAUSES, OUTCOMES, STEPS, Label

CORPUS = Path(__file__).resolve().parents[2] / "captures" / "corpus"
LABELS = CORPUS / "labels.jsonl"
# What a re-recording must reproduce; ports and client addresses change from run to run.
STABLE_FIELDS = ("outcome", "failed_step", "cause", "alert", "alert_sender", "version", "resumed", "alpn", "sni")
RERECORD = ("tls13_established_plain", "tls13_resumed_psk", "tls12_cert_unknown_ca", "tls13_cert_unknown_ca_gnutls",
            "no_common_version_old_client")

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def committed() -> list[Label]:
    if not LABELS.exists():
        pytest.skip("no committed corpus")
    return read_labels(LABELS)  # Label() itself refuses values outside CONTRACT.md's vocabulary


def test_every_label_names_a_capture_and_uses_the_contract_vocabulary() -> None:
    labels = committed()
    assert labels
    seen = set()
    for label in labels:
        assert (CORPUS / label.file).is_file(), f"{label.scenario}: {label.file} missing"
        assert label.file == f"{label.scenario}.pcap"
        assert label.outcome in OUTCOMES
        if label.outcome == "failed":
            assert label.failed_step in STEPS and label.cause in CAUSES
        assert (label.scenario, label.flow) not in seen, f"{label.scenario} flow {label.flow} twice"
        seen.add((label.scenario, label.flow))


def test_every_capture_has_labels_and_flows_are_numbered_from_one() -> None:
    labels = committed()
    by_file: dict[str, list[int]] = {}
    for label in labels:
        by_file.setdefault(label.file, []).append(label.flow)
    assert {p.name for p in CORPUS.glob("*.pcap")} == set(by_file)
    for file, flows in by_file.items():
        assert sorted(flows) == list(range(1, len(flows) + 1)), file


def test_every_committed_scenario_is_still_a_known_scenario() -> None:
    names = {s.name for s in discover()}
    unknown = {label.scenario for label in committed()} - names
    assert not unknown


@needs_tshark
@pytest.mark.tools
def test_committed_labels_hold_on_their_captures() -> None:
    labels = committed()
    by_file: dict[str, list[Label]] = {}
    for label in labels:
        by_file.setdefault(label.file, []).append(label)
    captures = []
    for file in sorted(by_file):
        keylog = CORPUS / file.replace(".pcap", ".keylog")
        captures.append((CORPUS / file, keylog if keylog.exists() else None))
    wires = read_wires(captures)
    problems = []
    for file, file_labels in sorted(by_file.items()):
        wire = {flow.flow: flow for flow in wires[CORPUS / file]}
        if len(wire) != len(file_labels):
            problems.append(f"{file}: {len(file_labels)} labels, {len(wire)} connections")
        for label in file_labels:
            if label.flow not in wire:
                problems.append(f"{file}: flow {label.flow} missing")
                continue
            problems += check_label(label, wire[label.flow])
    assert not problems, "\n".join(problems)


@needs_tshark
@pytest.mark.tools
def test_an_encrypted_tls13_alert_is_seen_as_encrypted_and_read_with_the_key_log() -> None:
    pcap = CORPUS / "tls13_cert_unknown_ca_gnutls.pcap"
    if not pcap.exists():
        pytest.skip("capture not recorded")
    without_keys = read_wire(pcap)[0].first_fatal_alert()
    with_keys = read_wire(pcap, pcap.with_suffix(".keylog"))[0].first_fatal_alert()
    assert without_keys is not None and without_keys.description == "encrypted"
    assert without_keys.sender == "client"
    assert with_keys is not None and with_keys.description == "encrypted" and with_keys.decrypted
    assert with_keys.frame == without_keys.frame


def _recording_tools_missing() -> str | None:
    for tool in ("tcpdump", "openssl", "tshark", "gnutls-cli"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if os.geteuid() != 0:
        return "tcpdump on lo needs root"
    return None


@pytest.mark.tools
@pytest.mark.slow
def test_rerecording_fast_scenarios_gives_the_committed_labels(tmp_path: Path) -> None:
    missing = _recording_tools_missing()
    if missing:
        pytest.skip(missing)
    scenarios = [s for s in discover() if s.name in RERECORD]
    assert {s.name for s in scenarios} == set(RERECORD)
    labels, failures = record(scenarios, tmp_path, all_scenarios=discover(), keep_other_labels=False)
    assert not failures
    for scenario in scenarios:
        assert (tmp_path / f"{scenario.name}.pcap").stat().st_size > 100
    ports = assign_ports()
    want = {(label.scenario, label.flow): label for label in committed() if label.scenario in RERECORD}
    have = {(label.scenario, label.flow): label for label in labels}
    assert set(have) == set(want)
    for key, label in have.items():
        assert label.server == f"127.0.0.1:{ports[label.scenario]}"
        for name in STABLE_FIELDS:
            assert getattr(label, name) == getattr(want[key], name), f"{key}: {name}"
