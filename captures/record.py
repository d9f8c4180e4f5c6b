"""Record the labelled corpus: ``python -m captures.record [--only NAME...] [--out DIR] [--list]``.

Discovers ``SCENARIOS`` in every scenario module, builds a fresh test PKI, gives each scenario its own loopback
port range, runs it (one pcap per scenario), then checks each returned label against tshark's reading of the
pcap (``captures.labels``) and fills in the wire facts (addresses, SNI, version, alert and its sender). Labels go
to ``DIR/labels.jsonl``; with ``--only``, the lines of other scenarios already there are kept.
Needs root (tcpdump on ``lo``, nginx), openssl, tcpdump and tshark; the scenarios that use them also need nginx,
curl, gnutls-cli and faketime.
"""
from __future__ import annotations

import argparse
import fcntl
import importlib
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

from captures.labels import check_label, fill_label, read_labels, read_wire, write_labels
from captures.pki import build_pki
from captures.scenario import Label, Pki, Scenario

SCENARIO_MODULES = ("captures.scenarios_tls", "captures.scenarios_network", "captures.scenarios_tunnel")
CORPUS = Path(__file__).resolve().parent / "corpus"
BASE_PORT = 24000
PORTS_PER_SCENARIO = 10  # a scenario owns port .. port+9 (helpers such as a relay may use the extra ones)
PORTS_PER_MODULE = 4000  # each module its own range, below the ephemeral ports (32768+): 24000-27999, 28000-31999


class RecordError(RuntimeError):
    """A scenario failed to record, or its labels do not hold on its own capture."""


def _modules(modules: tuple[str, ...]) -> list[list[Scenario]]:
    found = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                found.append([])  # that module is not written yet
                continue
            raise
        found.append(list(getattr(module, "SCENARIOS", [])))
    return found


def discover(modules: tuple[str, ...] = SCENARIO_MODULES) -> list[Scenario]:
    """Every scenario of every module that exists, in module order; names must be unique."""
    found = [scenario for scenarios in _modules(modules) for scenario in scenarios]
    names = [s.name for s in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise RecordError(f"duplicate scenario names: {sorted(duplicates)}")
    return found


def assign_ports(modules: tuple[str, ...] = SCENARIO_MODULES) -> dict[str, int]:
    """A stable port per scenario: its module's range plus its index in that module, so that adding scenarios
    to one module (at its end) never moves the others, and a re-recording lands on the same ports."""
    ports = {}
    for module_index, scenarios in enumerate(_modules(modules)):
        for index, scenario in enumerate(scenarios):
            ports[scenario.name] = BASE_PORT + PORTS_PER_MODULE * module_index + PORTS_PER_SCENARIO * index
    return ports


def record_one(scenario: Scenario, out: Path, port: int, pki: Pki) -> list[Label]:
    """Run one scenario into `out` and return its labels, checked against the capture and completed from it."""
    labels = scenario.run(out, port, pki)
    pcap = scenario.pcap(out)
    if not pcap.exists():
        raise RecordError(f"{scenario.name}: no pcap written")
    keylog = scenario.keylog(out)
    wire = {flow.flow: flow for flow in read_wire(pcap, keylog if keylog.exists() else None)}
    problems = []
    if len(wire) != len(labels):
        problems.append(f"{scenario.name}: {len(labels)} labels but {len(wire)} TCP connections in the pcap")
    checked = []
    for label in labels:
        flow = wire.get(label.flow)
        if flow is None:
            problems.append(f"{scenario.name}: flow {label.flow} not in the pcap")
            continue
        problems += check_label(label, flow)
        checked.append(fill_label(label, flow))
    if problems:
        raise RecordError("\n".join(problems))
    return checked


def add_trust_anchor(bundle: Path, ca_cert: Path) -> None:
    """Append this recording's root CA to the corpus trust bundle (`tlsflow --ca-bundle corpus/ca.pem`). Roots of
    earlier recordings stay: captures recorded with them are still in the corpus. Only public certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    root = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    known = x509.load_pem_x509_certificates(bundle.read_bytes()) if bundle.exists() else []
    if any(c.fingerprint(hashes.SHA256()) == root.fingerprint(hashes.SHA256()) for c in known):
        return
    with bundle.open("ab") as f:
        f.write(root.public_bytes(serialization.Encoding.PEM))


def record(scenarios: list[Scenario], out: Path, *, all_scenarios: list[Scenario] | None = None,
           keep_other_labels: bool = True, keep_failed: bool = False) -> tuple[list[Label], dict[str, str]]:
    """Record `scenarios` into `out`; returns the labels written and the failures (name -> reason)."""
    all_scenarios = all_scenarios or scenarios
    out.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    new_labels: dict[str, list[Label]] = {}
    ports = assign_ports()
    with tempfile.TemporaryDirectory(prefix="tlsflow-pki-") as pki_dir:
        pki = build_pki(Path(pki_dir))
        add_trust_anchor(out / "ca.pem", pki.ca_cert)
        for scenario in scenarios:
            started = time.monotonic()
            for stale in (scenario.pcap(out), scenario.keylog(out)):
                stale.unlink(missing_ok=True)
            try:
                new_labels[scenario.name] = record_one(scenario, out, ports[scenario.name], pki)
            except Exception as exc:  # noqa: BLE001  (one broken scenario must not stop the corpus)
                failures[scenario.name] = f"{type(exc).__name__}: {exc}"
                print(f"FAIL {scenario.name}: {exc}", file=sys.stderr)
                if not isinstance(exc, RecordError):
                    traceback.print_exc()
                if not keep_failed:
                    scenario.pcap(out).unlink(missing_ok=True)
                    scenario.keylog(out).unlink(missing_ok=True)
                continue
            summary = ", ".join(_describe(label) for label in new_labels[scenario.name])
            print(f"ok   {scenario.name} ({time.monotonic() - started:.1f} s): {summary}")
    labels_path = out / "labels.jsonl"
    # Two recordings may finish at once (one per scenario module): merge under a lock so neither loses lines.
    lock_path = Path(tempfile.gettempdir()) / f"tlsflow-labels-{zlib.crc32(str(out.resolve()).encode()):08x}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept: list[Label] = []
        if keep_other_labels and labels_path.exists():
            recorded = {s.name for s in scenarios}
            kept = [label for label in read_labels(labels_path) if label.scenario not in recorded]
        order = {s.name: i for i, s in enumerate(all_scenarios)}
        merged = kept + [label for labels in new_labels.values() for label in labels]
        merged.sort(key=lambda label: (order.get(label.scenario, len(order)), label.scenario, label.flow))
        write_labels(labels_path, merged)
    return merged, failures


def markdown_table(scenarios: list[Scenario], labels: list[Label]) -> str:
    """The scenario table of captures/README.md: one row per connection label."""
    described = {s.name: s.description for s in scenarios}
    rows = ["| scenario | what happens | flow | outcome | failed_step / cause | alert (sender) | version | client → server |",
            "|---|---|---|---|---|---|---|---|"]
    for label in labels:
        what = described.get(label.scenario, "") if label.flow == 1 else ""
        step = f"{label.failed_step} / {label.cause}" if label.outcome == "failed" else ""
        alert = f"{label.alert} ({label.alert_sender})" if label.alert else ""
        extra = " resumed" if label.resumed else ""
        impl = f"{label.client_impl or '?'} → {label.server_impl or '?'}" if label.client_impl else ""
        rows.append(f"| {label.scenario} | {what} | {label.flow} | {label.outcome}{extra} | {step} | {alert} | "
                    f"{label.version or ''} | {impl} |")
    return "\n".join(rows)


def _describe(label: Label) -> str:
    if label.outcome == "established":
        return f"#{label.flow} established {label.version}" + (" resumed" if label.resumed else "")
    alert = f" {label.alert_sender} alert {label.alert}" if label.alert else " no alert"
    return f"#{label.flow} {label.outcome} {label.failed_step}/{label.cause}{alert}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m captures.record", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="record only these scenarios")
    parser.add_argument("--out", type=Path, default=CORPUS, help=f"output directory (default {CORPUS})")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--table", action="store_true",
                        help="print the scenarios with their committed labels as a Markdown table and exit")
    parser.add_argument("--keep-failed", action="store_true", help="keep the pcap of a scenario that failed")
    args = parser.parse_args(argv)
    scenarios = discover()
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.name:45} {scenario.description}")
        return 0
    if args.table:
        print(markdown_table(scenarios, read_labels(args.out / "labels.jsonl")))
        return 0
    chosen = scenarios
    if args.only:
        unknown = set(args.only) - {s.name for s in scenarios}
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
        chosen = [s for s in scenarios if s.name in args.only]
    _, failures = record(chosen, args.out, all_scenarios=scenarios, keep_failed=args.keep_failed)
    print(f"{len(chosen) - len(failures)} of {len(chosen)} scenarios recorded into {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
