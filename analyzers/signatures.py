"""Checks the server's own signature with its certificate's public key: a ServerKeyExchange (TLS 1.2) or a
CertificateVerify (TLS 1.3, readable with a key log) that does not verify was made with a key that does not belong
to the certificate."""
from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from tlsparse.messages import HRR_RANDOM, ServerKeyExchange

_HASHES = {2: hashes.SHA1, 3: hashes.SHA224, 4: hashes.SHA256, 5: hashes.SHA384, 6: hashes.SHA512}
_PSS = {0x0804: hashes.SHA256, 0x0805: hashes.SHA384, 0x0806: hashes.SHA512,
        0x0809: hashes.SHA256, 0x080A: hashes.SHA384, 0x080B: hashes.SHA512}
_EDDSA = (0x0807, 0x0808)
_TLS13_SERVER_CONTEXT = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"


def _verify(cert_der: bytes, scheme: int, signature: bytes, data: bytes, *, tls13: bool) -> bool | None:
    """True/False for a signature over `data` with the certificate's key under SignatureScheme `scheme`; None when
    it cannot be checked. TLS 1.3 allows no PKCS#1 v1.5 and no SHA-1 (RFC 8446 4.2.3)."""
    try:
        key = x509.load_der_x509_certificate(cert_der).public_key()
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion):
        return None
    hash_id, sig_id = scheme >> 8, scheme & 0xFF
    try:
        if scheme in _PSS:
            if not isinstance(key, rsa.RSAPublicKey):
                return False  # the scheme's key type is not the certificate's: not this key's signature
            algorithm = _PSS[scheme]()
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(algorithm),
                                                    salt_length=padding.PSS.DIGEST_LENGTH), algorithm)
        elif scheme in _EDDSA:
            if not isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
                return False
            key.verify(signature, data)
        elif sig_id in (1, 3) and hash_id in _HASHES and not (tls13 and (sig_id == 1 or hash_id < 4)):
            algorithm = _HASHES[hash_id]()
            if sig_id == 1 and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, data, padding.PKCS1v15(), algorithm)
            elif sig_id == 3 and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(algorithm))
            else:
                return False
        else:
            return None
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return True


def verify_server_key_exchange(cert_der: bytes, client_random: bytes, server_random: bytes,
                               ske: ServerKeyExchange) -> bool | None:
    """True when the signature verifies with the certificate's key, False when it does not, None when it cannot
    be checked (no signature, TLS < 1.2 MD5+SHA-1 signatures, unknown scheme, undecodable certificate)."""
    if not ske.signature or not ske.signed_params or ske.signature_scheme is None:
        return None
    return _verify(cert_der, ske.signature_scheme, ske.signature, client_random + server_random + ske.signed_params,
                   tls13=False)


def tls13_transcript_hash(messages: list[bytes], suite_hash: str) -> bytes:
    """RFC 8446 4.4.1: the hash of the handshake messages; after a HelloRetryRequest the first ClientHello is
    replaced by a synthetic message_hash message holding its hash."""
    algorithm = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384}[suite_hash]
    if len(messages) > 1 and messages[1][:1] == b"\x02" and messages[1][6:38] == HRR_RANDOM:
        first = hashes.Hash(algorithm())
        first.update(messages[0])
        digest = first.finalize()
        messages = [b"\xfe\x00\x00" + bytes((len(digest),)) + digest] + messages[1:]
    h = hashes.Hash(algorithm())
    for message in messages:
        h.update(message)
    return h.finalize()


def verify_tls13_certificate_verify(cert_der: bytes, transcript: list[bytes], suite_hash: str | None,
                                    scheme: int | None, signature: bytes) -> bool | None:
    """The server's TLS 1.3 CertificateVerify checked with its certificate's key over the transcript up to its
    Certificate. True, False, or None when it cannot be checked."""
    if not transcript or suite_hash not in ("SHA256", "SHA384") or scheme is None or not signature:
        return None
    data = _TLS13_SERVER_CONTEXT + tls13_transcript_hash(transcript, suite_hash)
    return _verify(cert_der, scheme, signature, data, tls13=True)
