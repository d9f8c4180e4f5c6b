"""tlsparse.registry against IANA's CSV files, OpenSSL's own cipher table, and the committed data file."""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tlsparse import registry
from tlsparse.registry import cipher_suite_info, cipher_suite_name

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TLSFLOW_SHARED", REPO.parent / "shared"))
IANA = SHARED / "iana"
needs_iana = pytest.mark.skipif(not IANA.is_dir(), reason="shared IANA CSV files not available")


def iana_rows(name: str) -> list[dict[str, str]]:
    with (IANA / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def single_values(name: str) -> list[tuple[int, str]]:
    return [(int(r["value"], 0), r["name"]) for r in iana_rows(name) if "-" not in r["value"]]


# ---------------------------------------------------------------- names


def test_version_names() -> None:
    assert registry.version_name(0x0303) == "TLS 1.2"
    assert registry.version_name(0x0304) == "TLS 1.3"
    assert registry.version_name(0x0300) == "SSL 3.0"
    assert registry.version_name(0x0002) == "SSL 2.0"
    assert registry.version_name(0x7F17) == "TLS 1.3 (draft 23)"
    assert registry.version_name(0x0A0A) == "GREASE(0x0a0a)"
    assert registry.version_name(0x1234) == "unknown(0x1234)"


def test_names_the_contract_uses() -> None:
    assert registry.group_name(0x001D) == "x25519"
    assert registry.group_name(0x0017) == "secp256r1"
    assert registry.group_name(0x11EC) == "X25519MLKEM768"
    assert registry.cipher_suite_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert registry.cipher_suite_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert registry.alert_name(48) == "unknown_ca"
    assert registry.signature_scheme_name(0x0804) == "rsa_pss_rsae_sha256"


def test_annotations_and_reserved_suffix_are_stripped() -> None:
    assert registry.extension_name(0x000A) == "supported_groups"
    assert registry.extension_name(0x0023) == "session_ticket"
    assert registry.extension_name(0x0035) == "connection_id"
    assert registry.extension_name(0x0017) == "extended_main_secret"
    assert registry.group_name(0x6399) == "X25519Kyber768Draft00"
    assert registry.handshake_type_name(4) == "new_session_ticket"
    assert registry.handshake_type_name(12) == "server_key_exchange"
    assert registry.handshake_type_name(0) == "hello_request"
    assert registry.alert_name(100) == "no_renegotiation"
    assert registry.certificate_status_type_name(2) == "ocsp_multi"


def test_unknown_grease_reserved_and_private_values() -> None:
    assert registry.cipher_suite_name(0x1234) == "unknown(0x1234)"
    assert registry.cipher_suite_name(0x2A2A) == "GREASE(0x2a2a)"
    assert registry.cipher_suite_name(0xFF01) == "private_use(0xff01)"
    assert registry.extension_name(0xFAFA) == "GREASE(0xfafa)"
    assert registry.extension_name(0x0028) == "reserved(0x0028)"
    assert registry.extension_name(0xFF01) == "renegotiation_info"  # a real value inside a private-use range
    assert registry.extension_name(0xFF00) == "private_use(0xff00)"
    assert registry.group_name(0x0000) == "reserved(0x0000)"
    assert registry.signature_scheme_name(0x0202) == "reserved(0x0202)"
    assert registry.signature_scheme_name(0xFE10) == "private_use(0xfe10)"
    assert registry.alert_name(123) == "unknown(0x7b)"
    assert registry.alert_level_name(1) == "warning"
    assert registry.alert_level_name(2) == "fatal"
    assert registry.alert_level_name(9) == "unknown(0x09)"
    assert registry.content_type_name(22) == "handshake"
    assert registry.content_type_name(99) == "unknown(0x63)"
    assert registry.handshake_type_name(77) == "unknown(0x4d)"


def test_is_grease() -> None:
    assert [v for v in range(0x10000) if registry.is_grease(v)] == [0x0A0A + 0x1010 * i for i in range(16)]


def test_sslv2_cipher_kinds() -> None:
    assert registry.sslv2_cipher_kind_name(0x010080) == "SSL_CK_RC4_128_WITH_MD5"
    assert registry.sslv2_cipher_kind_name(0x0700C0) == "SSL_CK_DES_192_EDE3_CBC_WITH_MD5"
    assert registry.sslv2_cipher_kind_name(0x00002F) == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert registry.sslv2_cipher_kind_name(0x990000) == "unknown(0x990000)"


@needs_iana
@pytest.mark.parametrize(
    ("csv_name", "name_of"),
    [
        ("cipher_suites.csv", registry.cipher_suite_name),
        ("extensions.csv", registry.extension_name),
        ("supported_groups.csv", registry.group_name),
        ("signature_schemes.csv", registry.signature_scheme_name),
        ("alerts.csv", registry.alert_name),
        ("handshake_types.csv", registry.handshake_type_name),
        ("content_types.csv", registry.content_type_name),
        ("ec_point_formats.csv", registry.ec_point_format_name),
        ("psk_key_exchange_modes.csv", registry.psk_key_exchange_mode_name),
        ("versions.csv", registry.version_name),
    ],
)
def test_every_iana_value_has_its_name(csv_name: str, name_of) -> None:
    rows = single_values(csv_name)
    assert rows
    for value, name in rows:
        if name.startswith("Reserved"):
            assert re.fullmatch(r"(GREASE|reserved|private_use)\(0x[0-9a-f]+\)", name_of(value)), (value, name)
            continue
        bare = re.sub(r"\s+\((renamed from .*|OBSOLETE|deprecated)\)$", "", name).removesuffix("_RESERVED")
        assert name_of(value) == bare, (csv_name, value)


# ---------------------------------------------------------------- cipher suite properties


def test_cipher_suite_info_examples() -> None:
    info = cipher_suite_info(0xC02F)
    assert info is not None
    assert (info.name, info.kx, info.auth, info.cipher, info.mac) == (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE", "RSA", "AES_128_GCM", "AEAD")
    assert info.aead and info.forward_secrecy and not info.weak and not info.cbc

    tls13 = cipher_suite_info(0x1303)
    assert tls13 is not None and (tls13.kx, tls13.cipher, tls13.mac) == ("TLS13", "CHACHA20_POLY1305", "AEAD")
    assert tls13.forward_secrecy

    rsa = cipher_suite_info(0x000A)  # TLS_RSA_WITH_3DES_EDE_CBC_SHA
    assert rsa is not None and (rsa.kx, rsa.auth, rsa.cipher, rsa.mac) == ("RSA", "RSA", "3DES_EDE_CBC", "SHA")
    assert rsa.des and rsa.cbc and rsa.sha1_mac and rsa.weak and not rsa.forward_secrecy

    export = cipher_suite_info(0x0003)  # TLS_RSA_EXPORT_WITH_RC4_40_MD5
    assert export is not None and export.export and export.rc4 and export.md5 and export.weak

    anon = cipher_suite_info(0x0034)  # TLS_DH_anon_WITH_AES_128_CBC_SHA
    assert anon is not None and anon.anonymous and anon.auth == "anon" and anon.weak

    null = cipher_suite_info(0x0000)
    assert null is not None and null.null and null.weak

    psk = cipher_suite_info(0xCCAC)  # TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256
    assert psk is not None and (psk.kx, psk.auth) == ("ECDHE_PSK", "PSK") and psk.forward_secrecy

    dh = cipher_suite_info(0x0031)  # TLS_DH_RSA_WITH_AES_128_CBC_SHA: static DH, no forward secrecy
    assert dh is not None and (dh.kx, dh.auth) == ("DH", "RSA") and not dh.forward_secrecy

    ccm8 = cipher_suite_info(0xC0AE)  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
    assert ccm8 is not None and ccm8.cipher == "AES_128_CCM_8" and ccm8.aead and ccm8.hash is None


def test_no_info_for_scsv_grease_and_unknown() -> None:
    for code in (0x00FF, 0x5600, 0x0A0A, 0x1234, 0xFF01):
        assert cipher_suite_info(code) is None


@needs_iana
def test_every_named_suite_has_consistent_properties() -> None:
    named = [(v, n) for v, n in single_values("cipher_suites.csv") if n.startswith("TLS_") and "SCSV" not in n]
    assert len(named) > 300
    for code, name in named:
        info = cipher_suite_info(code)
        assert info is not None and info.name == name
        assert info.weak == (info.null or info.export or info.anonymous or info.rc4 or info.des or info.md5)
        assert info.aead == (info.mac == "AEAD")
        assert (info.cipher in name or name == "TLS_SHA256_SHA256" or name == "TLS_SHA384_SHA384")
        assert info.kx and info.auth
        assert info.rc4 == ("RC4" in name) and info.md5 == name.endswith("_MD5")
        if "_WITH_" not in name or code >> 8 == 0x13:
            assert info.kx == "TLS13"


# ---------------------------------------------------------------- against OpenSSL

OPENSSL_KX = {  # our kx -> OpenSSL's Kx= column
    "ECDHE": "ECDH", "DHE": "DH", "RSA": "RSA", "PSK": "PSK", "RSA_PSK": "RSAPSK", "DHE_PSK": "DHEPSK",
    "ECDHE_PSK": "ECDHEPSK", "SRP": "SRP", "TLS13": "any", "DH": "DH", "ECDH": "ECDH",
}
OPENSSL_AU = {"RSA": "RSA", "ECDSA": "ECDSA", "DSS": "DSS", "anon": "None", "PSK": "PSK", "SRP": "SRP",
              "TLS13": "any"}
OPENSSL_MAC = {"SHA": "SHA1", "SHA256": "SHA256", "SHA384": "SHA384", "MD5": "MD5", "AEAD": "AEAD"}


def openssl_suites() -> list[dict[str, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    out = subprocess.run(
        ["openssl", "ciphers", "-V", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    suites = []
    for line in out.splitlines():
        fields = line.split()
        # 0xC0,0x2C - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 - ECDHE-ECDSA-AES256-GCM-SHA384 TLSv1.2 Kx=.. Au=..
        hi, lo = fields[0].split(",")
        row = {"code": str((int(hi, 16) << 8) | int(lo, 16)), "stdname": fields[2]}
        row.update(f.split("=", 1) for f in fields if "=" in f)
        suites.append(row)
    return suites


@pytest.mark.tools
def test_openssl_suites_have_the_same_names_and_properties() -> None:
    suites = openssl_suites()
    assert len(suites) > 50
    for suite in suites:
        code = int(suite["code"])
        assert cipher_suite_name(code) == suite["stdname"]
        info = cipher_suite_info(code)
        assert info is not None, suite
        assert OPENSSL_KX[info.kx] == suite["Kx"], suite
        assert OPENSSL_AU[info.auth] == suite["Au"], suite
        assert OPENSSL_MAC[info.mac] == suite["Mac"], suite
        enc = suite["Enc"]
        assert info.null == (enc == "None"), suite
        assert info.aead == any(m in enc for m in ("GCM", "CCM", "POLY1305")), suite
        assert info.des == enc.startswith(("DES", "3DES")), suite
        assert info.rc4 == enc.startswith("RC4"), suite
        assert info.cbc == (not info.aead and enc not in ("None",) and not info.rc4), suite
        # OpenSSL's family name (AES, Camellia, ARIA, SEED, ...) appears in ours.
        family = re.sub(r"(GCM|CCM8|CCM)?\(\d+\)$", "", enc).split("/")[0].upper()
        if family not in ("NONE", "3DES"):
            assert family in info.cipher.replace("_", ""), suite


# ---------------------------------------------------------------- generated file is current


@needs_iana
def test_committed_data_file_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_registry.py"), "--check", "--iana", str(IANA)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


@needs_iana
def test_generator_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for name in ("a.json", "b.json"):
        out = tmp_path / name
        subprocess.run(
            [sys.executable, str(REPO / "tools" / "gen_registry.py"), "--iana", str(IANA), "--out", str(out)],
            check=True, timeout=60,
        )
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] == (REPO / "tlsparse" / "data" / "registry.json").read_bytes()
