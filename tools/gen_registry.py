"""Generate `tlsparse/data/registry.json` from the IANA TLS registries in CSV form (/work/shared/iana).

The package reads only the generated JSON at run time, so it never needs /work/shared. Cipher-suite properties
(key exchange, authentication, cipher, MAC, weakness flags) are derived here, once, from the IANA names by parsing
the `TLS_<KX>_WITH_<CIPHER>_<MAC>` grammar (and the TLS 1.3 `TLS_<AEAD>_<HASH>` form).

    python tools/gen_registry.py                 # regenerate
    python tools/gen_registry.py --check         # exit 1 if the committed file is out of date
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IANA = Path(os.environ.get("TLSFLOW_SHARED", REPO.parent / "shared")) / "iana"
DEFAULT_OUT = REPO / "tlsparse" / "data" / "registry.json"

# IANA annotations that are not part of an identifier: ` (renamed from "...")`, ` (OBSOLETE)`, ` (deprecated)`.
_ANNOTATION = re.compile(r"\s+\((?:renamed from [^)]*|OBSOLETE|deprecated)\)\s*$", re.IGNORECASE)

# Alert levels are fixed by RFC 8446 6 and have no IANA registry.
ALERT_LEVELS = {1: "warning", 2: "fatal"}

# SSLv2 CIPHER-KIND codes (SSL 2.0 draft, Appendix C; the last four from SSLeay/OpenSSL's ssl2.h, seen in old
# SSLv2-compatible hellos). IANA keeps no registry of them. Codes 0x00XXXX in an SSLv2 hello are TLS suites.
SSLV2_CIPHER_KINDS = {
    0x010080: "SSL_CK_RC4_128_WITH_MD5",
    0x020080: "SSL_CK_RC4_128_EXPORT40_WITH_MD5",
    0x030080: "SSL_CK_RC2_128_CBC_WITH_MD5",
    0x040080: "SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5",
    0x050080: "SSL_CK_IDEA_128_CBC_WITH_MD5",
    0x060040: "SSL_CK_DES_64_CBC_WITH_MD5",
    0x0700C0: "SSL_CK_DES_192_EDE3_CBC_WITH_MD5",
    0x060140: "SSL_CK_DES_64_CBC_WITH_SHA",
    0x0701C0: "SSL_CK_DES_192_EDE3_CBC_WITH_SHA",
    0x080080: "SSL_CK_RC4_64_WITH_MD5",
    0xFF0800: "SSL_CK_DES_64_CFB64_WITH_MD5_1",
    0xFF0810: "SSL_CK_NULL",
}

# Key-exchange part of `TLS_<KX>_WITH_...` -> (kx, auth). EXPORT is split off before the lookup.
KX_AUTH = {
    "NULL": ("NULL", "anon"),
    "RSA": ("RSA", "RSA"),
    "DH_DSS": ("DH", "DSS"),
    "DH_RSA": ("DH", "RSA"),
    "DHE_DSS": ("DHE", "DSS"),
    "DHE_RSA": ("DHE", "RSA"),
    "DH_anon": ("DH", "anon"),
    "KRB5": ("KRB5", "KRB5"),
    "PSK": ("PSK", "PSK"),
    "DHE_PSK": ("DHE_PSK", "PSK"),
    "PSK_DHE": ("DHE_PSK", "PSK"),  # 0xC0AA/0xC0AB (RFC 6655) spell it this way round
    "RSA_PSK": ("RSA_PSK", "RSA"),
    "ECDH_ECDSA": ("ECDH", "ECDSA"),
    "ECDHE_ECDSA": ("ECDHE", "ECDSA"),
    "ECDH_RSA": ("ECDH", "RSA"),
    "ECDHE_RSA": ("ECDHE", "RSA"),
    "ECDH_anon": ("ECDH", "anon"),
    "ECDHE_PSK": ("ECDHE_PSK", "PSK"),
    "SRP_SHA": ("SRP", "SRP"),
    "SRP_SHA_RSA": ("SRP", "RSA"),
    "SRP_SHA_DSS": ("SRP", "DSS"),
    "ECCPWD": ("ECCPWD", "ECCPWD"),
    "GOSTR341112_256": ("GOSTR341112_256", "GOSTR341012"),
}
# Ephemeral key agreement. Anonymous DH/ECDH are ephemeral too (and flagged anonymous, hence weak). SRP and
# ECCPWD (dragonfly) derive the premaster secret from per-connection secrets.
FORWARD_SECRET_KX = {"DHE", "ECDHE", "DHE_PSK", "ECDHE_PSK", "SRP", "ECCPWD", "TLS13"}
# GOST suites of RFC 9367 are TLS 1.3 suites although their names contain WITH.
TLS13_GOST = {0xC103, 0xC104, 0xC105, 0xC106}

MAC_TOKENS = ("SHA384", "SHA256", "SHA512", "SHA", "MD5", "SM3", "OMAC", "IMIT", "ASCONHASH256", "NULL")
AEAD_MARKERS = ("GCM", "CCM", "CHACHA20_POLY1305", "AEGIS", "ASCONAEAD", "MGM")


def clean_name(name: str) -> str:
    """IANA name without annotations and without RFC 9846's `_RESERVED` suffix (display form)."""
    name = _ANNOTATION.sub("", name.strip())
    name = name.removesuffix("_RESERVED")
    return name


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def parse_value(text: str) -> tuple[int, int]:
    """`0x002F`, `21`, `0xFF00-0xFFFF` or `248-255` -> inclusive (low, high)."""
    if "-" in text:
        low, high = text.split("-")
        return int(low, 0), int(high, 0)
    value = int(text, 0)
    return value, value


def load_registry(path: Path, width: int) -> dict:
    """One registry: exact names by value, plus the private-use ranges. GREASE and bare `Reserved` rows become
    kinds instead of names so that the package can print them as `GREASE(0x0a0a)` / `reserved(0x0028)`."""
    names: dict[str, str] = {}
    reserved: list[str] = []
    ranges: list[list] = []
    for row in read_rows(path):
        low, high = parse_value(row["value"])
        name = row["name"]
        if "private use" in name.lower():
            ranges.append([low, high, "private_use"])
            continue
        if low != high:
            continue
        if name.startswith("Reserved"):
            reserved.append(f"0x{low:0{width}X}")
            continue
        names[f"0x{low:0{width}X}"] = clean_name(name)
    return {"names": names, "reserved": reserved, "ranges": ranges}


def split_mac(rest: str) -> tuple[str, str | None]:
    """`AES_128_CBC_SHA256` -> (`AES_128_CBC`, `SHA256`); AEAD names such as `AES_128_CCM_8` have no hash."""
    for token in MAC_TOKENS:
        if rest.endswith("_" + token):
            return rest[: -len(token) - 1], token
    return rest, None


def suite_properties(code: int, name: str) -> dict | None:
    """Properties of one cipher suite from its IANA name; None for SCSVs, GREASE and reserved rows."""
    if not name.startswith("TLS_") or name.endswith("_SCSV"):
        return None
    body = name[len("TLS_"):]
    export = False
    if "_WITH_" in body and code not in TLS13_GOST:
        kx_part, rest = body.split("_WITH_", 1)
        if kx_part.endswith("_EXPORT"):
            export, kx_part = True, kx_part[: -len("_EXPORT")]
        kx, auth = KX_AUTH[kx_part]  # KeyError: a new key exchange in IANA's list; teach KX_AUTH about it
    else:
        # TLS 1.3 style: TLS_<AEAD>_<HASH>; the key exchange and authentication are negotiated separately.
        kx, auth = "TLS13", "TLS13"
        rest = body.split("_WITH_", 1)[-1]
    cipher, hash_token = split_mac(rest)
    if kx == "TLS13" and cipher == hash_token:  # TLS_SHA256_SHA256: integrity only (RFC 9150)
        cipher = "NULL"
    aead = any(marker in cipher for marker in AEAD_MARKERS)
    if aead:
        mac = "AEAD"
    elif kx == "TLS13" and cipher == "NULL":
        mac = hash_token or "NULL"  # integrity-only TLS 1.3 suites: HMAC with this hash
    else:
        mac = hash_token or "AEAD"
    if hash_token == "NULL":  # TLS_NULL_WITH_NULL_NULL: no MAC, no hash
        hash_token = None
    null = cipher == "NULL"
    anonymous = auth == "anon"
    rc4 = cipher.startswith("RC4")
    des = "DES" in cipher
    md5 = mac == "MD5"
    if "_40" in cipher or "40_" in cipher or cipher.startswith("DES40"):
        export = True
    return {
        "name": name,
        "kx": kx,
        "auth": auth,
        "cipher": cipher,
        "mac": mac,
        "hash": hash_token,
        "aead": aead,
        "forward_secrecy": kx in FORWARD_SECRET_KX or (anonymous and kx in ("DH", "ECDH")),
        "null": null,
        "export": export,
        "anonymous": anonymous,
        "rc4": rc4,
        "des": des,
        "md5": md5,
        "sha1_mac": mac == "SHA",
        "cbc": "CBC" in cipher,
        "weak": null or export or anonymous or rc4 or des or md5,
    }


def build(iana: Path) -> dict:
    registries = {
        "extensions": load_registry(iana / "extensions.csv", 4),
        "groups": load_registry(iana / "supported_groups.csv", 4),
        "signature_schemes": load_registry(iana / "signature_schemes.csv", 4),
        "alerts": load_registry(iana / "alerts.csv", 2),
        "handshake_types": load_registry(iana / "handshake_types.csv", 2),
        "content_types": load_registry(iana / "content_types.csv", 2),
        "ec_point_formats": load_registry(iana / "ec_point_formats.csv", 2),
        "psk_key_exchange_modes": load_registry(iana / "psk_key_exchange_modes.csv", 2),
        "certificate_status_types": load_registry(iana / "certificate_status_types.csv", 2),
        "versions": load_registry(iana / "versions.csv", 4),
        "cipher_suites": load_registry(iana / "cipher_suites.csv", 4),
    }
    registries["alert_levels"] = {
        "names": {f"0x{v:02X}": n for v, n in ALERT_LEVELS.items()}, "reserved": [], "ranges": []
    }
    registries["sslv2_cipher_kinds"] = {
        "names": {f"0x{v:06X}": n for v, n in SSLV2_CIPHER_KINDS.items()}, "reserved": [], "ranges": []
    }
    suites = {}
    for key, name in registries["cipher_suites"]["names"].items():
        props = suite_properties(int(key, 16), name)
        if props is not None:
            suites[key] = props
    grease = sorted(
        f"0x{int(row['value'], 0):04X}" for row in read_rows(iana / "grease.csv") if int(row["value"], 0) > 0xFF
    )
    return {
        "_comment": "Generated by tools/gen_registry.py from the IANA TLS registries; do not edit by hand.",
        "registries": registries,
        "cipher_suite_info": suites,
        "grease": grease,
    }


def render(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iana", type=Path, default=DEFAULT_IANA, help="folder with the IANA CSV files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--check", action="store_true", help="only compare with --out; exit 1 when it differs")
    args = parser.parse_args(argv)
    text = render(build(args.iana))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; run tools/gen_registry.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
