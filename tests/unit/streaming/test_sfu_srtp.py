"""The SFU's SRTP calls (``aiortc_hooks.srtp_protector`` / ``srtp_unprotector``) do exactly
what pylibsrtp's ``Session.protect`` / ``unprotect`` do, refusals included."""

from __future__ import annotations

import os
import struct

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from streaming.sfu.aiortc_hooks import srtp_protector, srtp_unprotector

KEY = os.urandom(30)


def _session(direction: int) -> Session:
    return Session(Policy(key=KEY, ssrc_type=direction))


def _rtp(seq: int, size: int = 1100) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 7) + os.urandom(size)


def test_protect_matches_pylibsrtp_and_unprotect_restores_the_packet():
    ours, theirs = _session(Policy.SSRC_ANY_OUTBOUND), _session(Policy.SSRC_ANY_OUTBOUND)
    protect = srtp_protector(ours)
    unprotect = srtp_unprotector(_session(Policy.SSRC_ANY_INBOUND))
    for seq in range(1, 50):
        packet = _rtp(seq, size=seq * 20)
        protected = protect(packet)
        assert protected == theirs.protect(packet)
        assert unprotect(protected) == packet


def test_unprotect_refuses_a_replay_a_forgery_and_an_oversize_packet():
    protect = srtp_protector(_session(Policy.SSRC_ANY_OUTBOUND))
    unprotect = srtp_unprotector(_session(Policy.SSRC_ANY_INBOUND))
    packet = _rtp(2)
    first, second = protect(_rtp(1)), protect(packet)
    assert unprotect(first)
    with pytest.raises(pylibsrtp.Error):
        unprotect(first)
    with pytest.raises(pylibsrtp.Error):
        unprotect(second[:-1] + bytes([second[-1] ^ 1]))
    with pytest.raises(ValueError):
        protect(_rtp(3, size=1500))
    assert unprotect(second) == packet  # the forgery left the session as it was
