"""Checks the server's own signature with its certificate's public key: a ServerKeyExchange (TLS 1.2) signed
with a key that does not belong to the certificate is a server whose key and certificate do not match."""
from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from tlsparse.messages import ServerKeyExchange

_HASHES = {2: hashes.SHA1, 3: hashes.SHA224, 4: hashes.SHA256, 5: hashes.SHA384, 6: hashes.SHA512}
_PSS = {0x0804: hashes.SHA256, 0x0805: hashes.SHA384, 0x0806: hashes.SHA512,
        0x0809: hashes.SHA256, 0x080A: hashes.SHA384, 0x080B: hashes.SHA512}


def verify_server_key_exchange(cert_der: bytes, client_random: bytes, server_random: bytes,
                               ske: ServerKeyExchange) -> bool | None:
    """True when the signature verifies with the certificate's key, False when it does not, None when it cannot
    be checked (no signature, TLS < 1.2 MD5+SHA-1 signatures, unknown scheme, undecodable certificate)."""
    if not ske.signature or not ske.signed_params or ske.signature_scheme is None:
        return None
    try:
        key = x509.load_der_x509_certificate(cert_der).public_key()
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion):
        return None
    data = client_random + server_random + ske.signed_params
    scheme = ske.signature_scheme
    try:
        if scheme in _PSS and isinstance(key, rsa.RSAPublicKey):
            algorithm = _PSS[scheme]()
            key.verify(ske.signature, data, padding.PSS(mgf=padding.MGF1(algorithm),
                                                        salt_length=padding.PSS.DIGEST_LENGTH), algorithm)
        elif scheme in (0x0807, 0x0808) and isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(ske.signature, data)
        else:
            hash_id, sig_id = scheme >> 8, scheme & 0xFF
            if hash_id not in _HASHES:
                return None
            algorithm = _HASHES[hash_id]()
            if sig_id == 1 and isinstance(key, rsa.RSAPublicKey):
                key.verify(ske.signature, data, padding.PKCS1v15(), algorithm)
            elif sig_id == 3 and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(ske.signature, data, ec.ECDSA(algorithm))
            elif sig_id in (1, 3):
                return False  # the scheme's key type is not the certificate's: it cannot be this key's signature
            else:
                return None
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return True


_TLS13_SERVER_CONTEXT = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"
_TLS13_SCHEMES = {0x0403: hashes.SHA256, 0x0503: hashes.SHA384, 0x0603: hashes.SHA512}


def tls13_transcript_hash(messages: list[bytes], suite_hash: str) -> bytes:
    """RFC 8446 4.4.1: the hash of the handshake messages; after a HelloRetryRequest the first ClientHello is
    replaced by a synthetic message_hash message holding its hash."""
    algorithm = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384}[suite_hash]
    if len(messages) > 1 and messages[1][:1] == b"\x02" and _is_hrr(messages[1]):
        first = hashes.Hash(algorithm())
        first.update(messages[0])
        digest = first.finalize()
        messages = [b"\xfe\x00\x00" + bytes((len(digest),)) + digest] + messages[1:]
    h = hashes.Hash(algorithm())
    for message in messages:
        h.update(message)
    return h.finalize()


def _is_hrr(raw: bytes) -> bool:
    from tlsparse.messages import HRR_RANDOM

    return raw[6:38] == HRR_RANDOM


def verify_tls13_certificate_verify(cert_der: bytes, transcript: list[bytes], suite_hash: str | None,
                                    scheme: int | None, signature: bytes) -> bool | None:
    """The server's TLS 1.3 CertificateVerify (readable with a key log) checked with its certificate's key over
    the transcript up to its Certificate. True, False, or None when it cannot be checked."""
    if not transcript or suite_hash not in ("SHA256", "SHA384") or scheme is None or not signature:
        return None
    try:
        key = x509.load_der_x509_certificate(cert_der).public_key()
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion):
        return None
    data = _TLS13_SERVER_CONTEXT + tls13_transcript_hash(transcript, suite_hash)
    try:
        if scheme in _PSS and isinstance(key, rsa.RSAPublicKey):
            algorithm = _PSS[scheme]()
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH),
                       algorithm)
        elif scheme in _TLS13_SCHEMES and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_TLS13_SCHEMES[scheme]()))
        elif scheme in (0x0807, 0x0808) and isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        elif scheme in _PSS or scheme in _TLS13_SCHEMES:
            return False  # the scheme's key type is not the certificate's
        else:
            return None
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return True
