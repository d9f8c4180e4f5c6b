"""tlsparse: a sans-I/O TLS record and handshake parser. Feed bytes per direction into a `TlsConnection`,
get typed events (`tlsparse.events`) carrying typed handshake messages (`tlsparse.messages`)."""
from tlsparse.cache import ParseCache
from tlsparse.connection import TlsConnection
from tlsparse.errors import TlsParseError
from tlsparse.events import (
    AlertSeen,
    ApplicationDataSeen,
    ChangeCipherSpecSeen,
    EncryptedRecordSeen,
    Event,
    GapSeen,
    HandshakeSeen,
    HeartbeatSeen,
    NotTlsSeen,
    ParseAnomaly,
    RecordSeen,
    ResyncSeen,
    Sender,
    Sslv2RecordSeen,
    TruncatedRecordSeen,
    UnknownRecordSeen,
    UpgradeAskedSeen,
    UpgradeReplySeen,
)
from tlsparse.messages import (
    Certificate,
    CertificateRequest,
    CertificateStatus,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    EncryptedExtensions,
    EndOfEarlyData,
    Extension,
    Finished,
    HandshakeBody,
    HelloRequest,
    KeyShareEntry,
    KeyUpdate,
    NewSessionTicket,
    RawHandshake,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
    is_grease,
)

__all__ = [
    "AlertSeen", "ApplicationDataSeen", "Certificate", "CertificateRequest", "CertificateStatus",
    "CertificateVerify", "ChangeCipherSpecSeen", "ClientHello", "ClientKeyExchange", "EncryptedExtensions",
    "EncryptedRecordSeen", "EndOfEarlyData", "Event", "Extension", "Finished", "GapSeen", "HandshakeBody",
    "HandshakeSeen", "HeartbeatSeen", "HelloRequest", "KeyShareEntry", "KeyUpdate", "NewSessionTicket",
    "NotTlsSeen", "ParseAnomaly", "ParseCache", "RawHandshake", "RecordSeen", "ResyncSeen", "Sender", "ServerHello",
    "ServerHelloDone", "ServerKeyExchange", "Sslv2RecordSeen", "TlsConnection", "TlsParseError",
    "TruncatedRecordSeen", "UnknownRecordSeen", "UpgradeAskedSeen", "UpgradeReplySeen", "is_grease",
]
