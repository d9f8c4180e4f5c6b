"""A plaintext prelude in which the client asks to start TLS and the server answers (hand-built bytes: the
protocols the corpus has no server for; SMTP is also in the corpus, real). The parser reports the request and the
server's first answer after it, and nothing for plain talk without a request."""
from __future__ import annotations

import pytest

from tlsparse import NotTlsSeen, Sender, TlsConnection, UpgradeAskedSeen, UpgradeReplySeen

C, S = Sender.CLIENT, Sender.SERVER


def _talk(*turns: tuple[Sender, bytes]) -> list:
    tls = TlsConnection()
    events = []
    for frame, (sender, data) in enumerate(turns, start=1):
        events += tls.receive(sender, data, frame, float(frame))
    return events


@pytest.mark.parametrize(("turns", "command", "reply"), [
    # SMTP
    ([(S, b"220 mail.test ESMTP\r\n"), (C, b"EHLO me\r\n"), (S, b"250-mail.test\r\n250 STARTTLS\r\n"),
      (C, b"STARTTLS\r\n"), (S, b"454 4.7.0 TLS not available due to local problem\r\n")],
     b"STARTTLS", b"454 4.7.0 TLS not available due to local problem"),
    # IMAP, tagged
    ([(S, b"* OK IMAP4rev1 ready\r\n"), (C, b"a1 STARTTLS\r\n"), (S, b"a1 NO [UNAVAILABLE] TLS is off\r\n")],
     b"a1 STARTTLS", b"a1 NO [UNAVAILABLE] TLS is off"),
    # POP3
    ([(S, b"+OK POP3 ready\r\n"), (C, b"STLS\r\n"), (S, b"-ERR Command not permitted\r\n")],
     b"STLS", b"-ERR Command not permitted"),
    # FTP
    ([(S, b"220 FTP server ready\r\n"), (C, b"AUTH TLS\r\n"), (S, b"534 Policy requires SSL.\r\n")],
     b"AUTH TLS", b"534 Policy requires SSL."),
    # XMPP
    ([(C, b"<?xml version='1.0'?><stream:stream to='x.test'>"), (S, b"<?xml version='1.0'?><stream:stream>"),
      (C, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
      (S, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")],
     b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'", b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
    # PostgreSQL's SSLRequest, refused with one byte
    ([(C, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), (S, b"N")], b"\x00\x00\x00\x08\x04\xd2\x16\x2f", b"N"),
])
def test_request_and_answer(turns, command: bytes, reply: bytes) -> None:
    events = _talk(*turns)
    asked = [e for e in events if isinstance(e, UpgradeAskedSeen)]
    answered = [e for e in events if isinstance(e, UpgradeReplySeen)]
    assert [(e.sender, e.command) for e in asked] == [(C, command)]
    assert [(e.sender, e.reply) for e in answered] == [(S, reply)]
    assert answered[0].frame > asked[0].frame


def test_plain_talk_asks_nothing() -> None:
    events = _talk((S, b"220 mail.test ESMTP\r\n"), (C, b"EHLO me\r\n"), (S, b"250 mail.test\r\n"),
                   (C, b"MAIL FROM:<a@b>\r\n"), (S, b"250 OK\r\n"), (C, b"DATA STARTTLS is just a word here\r\n"))
    assert [type(e) for e in events] == [NotTlsSeen, NotTlsSeen]


def test_the_answer_is_the_first_after_the_request() -> None:
    """Server lines before the request (banner, capabilities) are not its answer, even when the request and the
    answer share nothing with them."""
    events = _talk((S, b"220 ready\r\n"), (C, b"STARTTLS\r\n"), (S, b"220 2.0.0 Ready to start TLS\r\n"))
    assert [e.reply for e in events if isinstance(e, UpgradeReplySeen)] == [b"220 2.0.0 Ready to start TLS"]
