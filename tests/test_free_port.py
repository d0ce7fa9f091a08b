"""The ports handed to services the tests and ``make run`` start: never from the range the
kernel gives to ``bind(0)``, so no other server can take one between its choice and its use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from switchboard import embedded
from switchboard.embedded import LOWEST_PICKED_PORT, free_port


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_port_is_below_the_kernels_own_range_and_can_be_listened_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t60999\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_PORTS", ranges)
    ports = {free_port() for _ in range(50)}
    assert all(LOWEST_PICKED_PORT <= port < 40_000 for port in ports), ports
    assert len(ports) > 40, "ports are spread, so that concurrent choosers rarely meet"
    _listen(ports.pop()).close()


def test_a_port_something_listens_on_is_never_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranges = tmp_path / "ip_local_port_range"
    # Every other port of the range: a chooser that did not check would hit one half the time.
    taken = [
        sock
        for port in range(LOWEST_PICKED_PORT, LOWEST_PICKED_PORT + 1_000, 2)
        if (sock := _try_listen(port))
    ]
    ranges.write_text(f"{LOWEST_PICKED_PORT + 1_000} 60999\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_PORTS", ranges)
    try:
        held = {sock.getsockname()[1] for sock in taken}
        assert held, "some of the range could be held"
        for _ in range(20):
            port = free_port()
            assert port not in held
            _listen(port).close()
    finally:
        for sock in taken:
            sock.close()


def _try_listen(port: int) -> socket.socket | None:
    try:
        return _listen(port)
    except OSError:
        return None


def test_without_the_kernels_range_the_linux_default_is_assumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "EPHEMERAL_PORTS", tmp_path / "absent")
    assert all(LOWEST_PICKED_PORT <= free_port() < 32_768 for _ in range(20))


def test_two_processes_choose_from_different_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test workers choosing at the same time, each before binding: their first draws come
    from slices of their own, so neither can take the other's port meanwhile."""
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("36000\t60999\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_PORTS", ranges)
    chosen = {}
    for pid in (4100, 4101):
        monkeypatch.setattr(embedded.os, "getpid", lambda pid=pid: pid)
        chosen[pid] = {free_port() for _ in range(30)}
    monkeypatch.undo()
    width = (36_000 - LOWEST_PICKED_PORT) // embedded.PORT_SLICES
    for pid, ports in chosen.items():
        start = LOWEST_PICKED_PORT + (pid % embedded.PORT_SLICES) * width
        assert all(start <= port < start + width for port in ports), (pid, ports)
    assert not chosen[4100] & chosen[4101]


def test_one_process_gives_no_port_twice_before_walking_its_whole_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test chooses a bot's port, then the service's, binding neither yet: the second
    choice must not be the first. 200 choices from a slice of 1,125 ports: drawn at random,
    two would meet all but certainly; walked in turn, none can, even with every other port
    of the slice held by someone else (another test worker)."""
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("29000\t60999\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_PORTS", ranges)
    monkeypatch.setattr(embedded.os, "getpid", lambda: embedded.PORT_SLICES - 1)
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports), sorted(ports)
