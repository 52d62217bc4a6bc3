"""Hosts on one machine: Linux network namespaces joined by veth pairs to a bridge.

Each "host" is a network namespace with one interface (eth0) and its own address on a /24; the
bridge's end of its veth pair can be taken down (the host's cable pulled) and up again. The
machine itself (the root namespace) has the bridge's address, .254, and reaches every host as a
client on the network would. Processes run in a host with `ip netns exec`, each in a session of
its own so that stopping one stops everything it started. Everything made here has a random
prefix and is removed by `close()`, also after a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def unavailable() -> str | None:
    """Why this machine cannot build such a network (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and veth pairs)"
    if not shutil.which("ip"):
        return "needs iproute2's `ip` (apt-get install -y iproute2)"
    name = f"faprobe{secrets.token_hex(3)}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def ip(*arguments: str) -> None:
    completed = subprocess.run(["ip", *arguments], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)}: {completed.stderr.strip()}")


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no interface of this machine is on."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        second, third = 200 + secrets.randbelow(50), secrets.randbelow(250)
        if f"inet 10.{second}.{third}." not in used:
            return ipaddress.ip_network(f"10.{second}.{third}.0/24")
    raise RuntimeError("no free 10.x.y.0/24")


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    cable: str  # the bridge's end of its veth pair
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with log.open("ab") as output:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *argv],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv], env=env, capture_output=True, text=True, timeout=timeout
        )

    def stop(self, grace: float = 20) -> None:
        """SIGTERM every process group started here (newest first), SIGKILL what is left after `grace`."""
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in reversed(self.processes):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class Network:
    def __init__(self, names: list[str]) -> None:
        tag = secrets.token_hex(2)
        self.subnet = free_subnet()
        base = self.subnet.network_address
        self.bridge = f"fa{tag}br"
        self.gateway = str(base + 254)  # the machine's own address on the network
        self.hosts = {
            name: Host(name, f"fa{tag}-{name}", str(base + index + 1), f"fa{tag}{name}"[:15])
            for index, name in enumerate(names)
        }
        self.created: list[str] = []

    def open(self) -> Network:
        ip("link", "add", self.bridge, "type", "bridge")
        self.created.append("bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            ip("netns", "add", host.namespace)
            self.created.append(host.namespace)
            peer = f"{host.cable[:12]}p"
            ip("link", "add", host.cable, "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", host.namespace)
            ip("-n", host.namespace, "link", "set", peer, "name", "eth0")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")
            ip("-n", host.namespace, "link", "set", "lo", "up")
            ip("link", "set", host.cable, "master", self.bridge)
            ip("link", "set", host.cable, "up")
        self._let_the_bridge_forward()
        return self

    def _forwarding_rule(self, action: str) -> list[str]:
        return ["iptables", action, "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    def _let_the_bridge_forward(self) -> None:
        """Where Docker runs, bridged packets pass iptables' FORWARD chain, whose policy it sets to
        DROP: the hosts could not reach each other. Our bridge's own traffic is let through."""
        if shutil.which("iptables") is None:
            return
        if subprocess.run(self._forwarding_rule("-I"), capture_output=True).returncode == 0:
            self.created.append("forwarding")

    def cut(self, name: str) -> None:
        """Pull the host's cable: its packets go nowhere, and nothing tells its peers."""
        ip("link", "set", self.hosts[name].cable, "down")

    def reconnect(self, name: str) -> None:
        ip("link", "set", self.hosts[name].cable, "up")

    def close(self) -> None:
        for host in reversed(self.hosts.values()):
            host.stop()
        for host in self.hosts.values():
            if host.namespace in self.created:
                subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        if "bridge" in self.created:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        if "forwarding" in self.created:
            subprocess.run(self._forwarding_rule("-D"), capture_output=True)
