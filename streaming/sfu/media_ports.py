"""Where an SFU worker's media sockets live: a fixed UDP port range (what Docker publishes
and a firewall opens) and the address announced in ICE candidates (the host's public one
when the worker sits behind NAT, such as Docker's bridge network; mediasoup calls it the
"announced IP").

aioice binds every host candidate to an ephemeral port and announces the interface address;
``configure_media_ports`` replaces its host-candidate gathering for this process. With an
announced address the worker is reachable there, so it gathers nothing else: no STUN query
and no TURN allocation of its own per peer (a round trip or two, up to aioice's 5 s timeout,
before every answer), as Janus and mediasoup do; a client behind a strict NAT reaches that
address through its own TURN relay. Without one, TURN relay candidates are gathered by aioice
as before.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aioice import turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

from common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class MediaPorts:
    """``port_min``..``port_max`` inclusive (both or neither); ``announced_ip`` or None."""

    port_min: int | None = None
    port_max: int | None = None
    announced_ip: str | None = None

    @property
    def active(self) -> bool:
        return self.port_min is not None or self.announced_ip is not None


_config = MediaPorts()
_aioice_component_candidates = aioice.ice.Connection.get_component_candidates


def configure_media_ports(ports: MediaPorts) -> None:
    """Use ``ports`` for every ICE connection this process creates from now on."""
    global _config
    if (ports.port_min is None) != (ports.port_max is None):
        raise ValueError("give both ends of the media port range, or neither")
    if (
        ports.port_min is not None
        and ports.port_max is not None
        and ports.port_min > ports.port_max
    ):
        raise ValueError("the media port range is empty")
    _config = ports
    aioice.ice.Connection.get_component_candidates = _component_candidates  # type: ignore[method-assign]


async def _bind(connection: aioice.ice.Connection, address: str, ports: MediaPorts) -> Any:
    loop = asyncio.get_running_loop()
    if ports.port_min is None or ports.port_max is None:
        candidates = [0]
    else:
        candidates = list(range(ports.port_min, ports.port_max + 1))
        offset = random.randrange(len(candidates))  # spread, so ports are not retried in order
        candidates = candidates[offset:] + candidates[:offset]
    for port in candidates:
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
            )
        except OSError:
            continue
        return protocol
    raise OSError(f"no free UDP media port in {ports.port_min}-{ports.port_max} on {address}")


async def _component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: int = 5
) -> list[Candidate]:
    ports = _config
    if not ports.active:
        return await _aioice_component_candidates(self, component, addresses, timeout)
    candidates: list[Candidate] = []
    for address in addresses:
        try:
            protocol = await _bind(self, address, ports)
        except OSError as exc:
            log.warning("sfu_media_port_unavailable", address=address, error=str(exc))
            continue
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
        bound = protocol.transport.get_extra_info("sockname")
        host = ports.announced_ip or bound[0]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=bound[1],
            type="host",
        )
        candidates.append(protocol.local_candidate)
        self._protocols.append(protocol)
    if self.stun_server is not None and ports.announced_ip is None:
        stun_server = self.stun_server
        queries = [
            asyncio.ensure_future(aioice.ice.server_reflexive_candidate(protocol, stun_server))
            for protocol in self._protocols
            if protocol.local_candidate in candidates
        ]
        if queries:
            done, pending = await asyncio.wait(queries, timeout=timeout)
            for query in pending:
                query.cancel()
            candidates += [q.result()[0] for q in done if q.exception() is None]
    if ports.announced_ip is None:
        # TURN relays (and nothing else: no host addresses) the way aioice gathers them.
        candidates += await _aioice_component_candidates(self, component, [], timeout)
    return candidates
