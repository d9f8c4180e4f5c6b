"""What to do about each cause: one or two sentences naming the side to change. Kept apart from the rules so
that wording can be reviewed (and translated) without touching logic."""
from __future__ import annotations

HINTS: dict[str, str] = {
    "cert_expired": "Server side: renew the server certificate and install the new one (with its chain).",
    "cert_not_yet_valid": "Server side: the certificate's notBefore is in the future; check the issuing date or the "
                          "server's clock, or install a certificate that is already valid.",
    "cert_hostname_mismatch": "Server side: the certificate does not cover the requested name; issue one whose "
                              "subjectAltName includes it, or fix the name the client uses (SNI).",
    "cert_self_signed": "Server side: install a certificate issued by a CA the clients trust, or (private use) add "
                        "this certificate to the client's trust store.",
    "cert_unknown_ca": "Client side: add the issuing CA to the client's trust store (e.g. --cacert / CAfile), or "
                       "server side: use a certificate from a publicly trusted CA.",
    "cert_incomplete_chain": "Server side: send the intermediate certificate(s) with the leaf (full chain file, "
                             "e.g. nginx ssl_certificate fullchain.pem).",
    "cert_revoked": "Server side: the certificate was revoked (stapled OCSP says so); install a new certificate.",
    "cert_weak": "Server side: replace the certificate with one that has an RSA key of at least 2048 bits (or "
                 "ECDSA P-256) and a SHA-256 signature.",
    "cert_rejected": "Client side refused the server certificate; check its trust store, the name it connects to, "
                     "and the certificate's validity. A key log (SSLKEYLOGFILE) reveals the exact alert.",
    "client_cert_missing": "Client side: the server requires a client certificate; configure one (e.g. curl --cert/"
                           "--key, openssl s_client -cert/-key).",
    "client_cert_rejected": "The server refused the client certificate: make sure it is issued by a CA the server "
                            "trusts (ssl_client_certificate / -CAfile on the server) and is valid.",
    "no_common_version": "Enable a common protocol version: upgrade the older side, or allow TLS 1.2 on the side "
                         "that only offers TLS 1.3 (or the reverse).",
    "no_common_cipher": "Configure at least one cipher suite both sides support (e.g. ECDHE with AES-GCM for TLS 1.2, "
                        "any TLS 1.3 suite); compare the client's offer with the server's cipher list.",
    "weak_cipher_only": "Server side: the only suites it offers are weak (NULL, EXPORT, RC4, DES/3DES, anonymous); "
                        "enable modern ECDHE AES-GCM or ChaCha20 suites.",
    "no_common_group": "Configure a common key-exchange group (x25519 or secp256r1 work everywhere) on both sides.",
    "alpn_mismatch": "The server supports none of the application protocols the client offered (ALPN); enable the "
                     "protocol on the server or offer one it supports from the client.",
    "sni_unrecognized": "The server has no site for the requested name (SNI); configure a virtual host for it or "
                        "connect with the right host name.",
    "tcp_refused": "Nothing listens on the server port (RST to SYN): start the service or fix the port; check for a "
                   "firewall that rejects.",
    "tcp_no_answer": "The SYN got no answer: the host is down, unreachable, or a firewall drops the traffic.",
    "reset_after_client_hello": "The server (or a device in front of it) reset the connection on seeing the "
                                "ClientHello: check the server's TLS configuration and logs, and any IPS/firewall "
                                "TLS policy (SNI filtering).",
    "reset_injected": "A device on the path (firewall, IPS, censor) forged a RST: its TTL/IP ID do not fit the "
                      "server's own packets. Check the middlebox's TLS/SNI policy.",
    "reset_during_handshake": "The connection was reset in the middle of the handshake; check the resetting side's "
                              "logs and any middlebox between the two.",
    "server_silent": "The server accepted the TCP connection but never answered the ClientHello: check that a TLS "
                     "service (not plain TCP) listens there, and that it is not overloaded or stuck.",
    "closed_without_alert": "The peer closed the connection without a TLS alert: typically a server that is not TLS, "
                            "a proxy policy, or a crash; check the closing side's logs.",
    "not_tls": "The bytes on this connection are not TLS: a plain-text service on a TLS port, or a client talking "
               "plain text to a TLS port. Check the port and scheme (http:// vs https://).",
    "packet_loss": "Handshake segments were lost and retransmitted: look at the network path (loss, congestion, "
                   "a link with errors).",
    "mtu_blackhole": "Large segments never arrived while small ones did: a path MTU black hole. Allow ICMP "
                     "'fragmentation needed', or lower the MSS/MTU (MSS clamping) on the path.",
    "client_clock_skew": "Client side: its clock is wrong (it calls a valid certificate expired or not yet valid); "
                         "fix the client's time (NTP).",
    "cert_key_mismatch": "Server side: its private key does not belong to its certificate; install the matching "
                         "key/certificate pair.",
    "decrypt_error": "Keys or signatures did not check (bad_record_mac / decrypt_error): a broken middlebox that "
                     "modifies traffic, a buggy implementation, or a mismatched key.",
    "handshake_failure": "The peer refused the handshake without saying why (handshake_failure); compare versions, "
                         "suites, groups and certificate settings of both sides, and check the refusing side's logs.",
    "alert_other": "The peer sent a fatal alert; see 'alert' and the refusing side's logs.",
    "unknown": "The handshake did not complete and the capture shows no reason; capture closer to the endpoints.",
}


def hint_for(cause: str | None) -> str | None:
    return HINTS.get(cause) if cause else None
