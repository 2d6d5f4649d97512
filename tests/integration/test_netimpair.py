"""The kernel-level weak link the loss tests rely on: UDP is lost and delayed on its way,
TCP is not touched, and the rules are gone afterwards."""

from __future__ import annotations

import socket
import time

import pytest

from tests.fixtures.netimpair import impair

pytestmark = pytest.mark.timeout(60)


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return sender, receiver


def _received(receiver: socket.socket, *, quiet_s: float) -> list[tuple[bytes, float]]:
    receiver.settimeout(quiet_s)
    arrivals: list[tuple[bytes, float]] = []
    try:
        while True:
            arrivals.append((receiver.recv(64), time.monotonic()))
    except TimeoutError:
        return arrivals


def test_udp_loses_about_the_asked_share_and_tcp_nothing() -> None:
    sender, receiver = _udp_pair()
    listener = socket.create_server(("127.0.0.1", 0))
    with sender, receiver, listener, impair(loss=0.30) as link:
        for index in range(2000):
            sender.sendto(index.to_bytes(4, "big"), receiver.getsockname())
        arrived = _received(receiver, quiet_s=0.5)
        with socket.create_connection(listener.getsockname()) as client:
            served, _ = listener.accept()
            with served:
                client.sendall(bytes(1 << 20))
                got = 0
                while got < 1 << 20:
                    got += len(served.recv(1 << 16))
    assert link.udp_packets == 2000
    assert link.dropped == 2000 - len(arrived)
    assert 480 < link.dropped < 720  # 30 % of 2000 is 600, sd ≈ 20
    with impair() as clean:  # the previous rules are gone: nothing lost
        sender, receiver = _udp_pair()
        with sender, receiver:
            for _ in range(200):
                sender.sendto(b"x", receiver.getsockname())
            assert len(_received(receiver, quiet_s=0.3)) == 200
    assert clean.dropped == 0


def test_udp_is_held_for_the_delay_and_stays_in_order() -> None:
    sender, receiver = _udp_pair()
    with sender, receiver, impair(loss=0.05, delay_ms=80) as link:
        sent: dict[int, float] = {}
        for index in range(100):
            sent[index] = time.monotonic()
            sender.sendto(index.to_bytes(4, "big"), receiver.getsockname())
            time.sleep(0.005)
        arrived = _received(receiver, quiet_s=0.5)
    order = [int.from_bytes(data, "big") for data, _ in arrived]
    assert order == sorted(order) and 80 <= len(order) < 100
    delays = [at - sent[int.from_bytes(data, "big")] for data, at in arrived]
    assert min(delays) >= 0.078
    assert link.delayed == len(arrived) and link.dropped == 100 - len(arrived)
