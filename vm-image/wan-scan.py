#!/usr/bin/env python3
"""wan-scan.py - scan a host's TCP and UDP ports from one source address
(vm-image/test.sh runs it in the WAN-side namespace against the appliance's
WAN address; root: a raw ICMP socket).

    wan-scan.py --target IP --source IP [--tcp PORTS] [--udp PORTS]
                [--udp-count N] [--udp-rate PPS]

PORTS: numbers and ranges, e.g. 1-1024,5000-10000,51821.

TCP: a connect() to every port from --source, 2048 at a time, each given
3.5 s (the SYN is sent again after 1 s and 3 s): "open" (handshake done),
"refused" (RST, or an ICMP error), "filtered" (no answer).

UDP: one datagram to every port from one socket bound to --source, at
--udp-rate per second, then 2 s more of listening: a port "answered" with a
datagram or with an ICMP destination-unreachable quoting our datagram (a
closed port answers port-unreachable, when the kernel's ICMP rate limits let
it); "silent" otherwise (dropped, or an open port that ignores the probe).
--udp-count N sends N datagrams to each port (for counting them on the other
side).

Output: one line per class, ports as ranges, then machine-readable lines
`tcp_open=...`, `tcp_refused=...`, `udp_answered=...` (comma-separated
ranges, empty when none) for the caller to compare.
"""
import argparse
import errno
import resource
import select
import socket
import struct
import sys
import time

PROBE = b"ipiece wan-scan probe\n"
TCP_BATCH = 2048
TCP_WAIT = 3.5
UDP_TAIL = 2.0


def parse_ports(spec):
    ports = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if not (1 <= lo <= hi <= 65535):
            raise ValueError("bad port range %r" % part)
        ports.update(range(lo, hi + 1))
    return sorted(ports)


def ranges(ports):
    """[1, 2, 3, 7] -> "1-3,7"."""
    out, ports = [], sorted(ports)
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1] == ports[j] + 1:
            j += 1
        out.append(str(ports[i]) if i == j else "%d-%d" % (ports[i], ports[j]))
        i = j + 1
    return ",".join(out)


def tcp_scan(target, source, ports):
    """port -> "open" | "refused" | "filtered" | errno name."""
    result = {}
    for start in range(0, len(ports), TCP_BATCH):
        ep = select.epoll()
        pending = {}
        for port in ports[start:start + TCP_BATCH]:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            # an RST on close: no half-closed connections left on the target
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.bind((source, 0))
            rc = s.connect_ex((target, port))
            if rc not in (0, errno.EINPROGRESS):
                result[port] = errno.errorcode.get(rc, str(rc))
                s.close()
                continue
            ep.register(s.fileno(), select.EPOLLOUT)
            pending[s.fileno()] = (s, port)
        deadline = time.monotonic() + TCP_WAIT
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in ep.poll(left):
                s, port = pending.pop(fd)
                ep.unregister(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    result[port] = "open"
                elif err == errno.ECONNREFUSED:
                    result[port] = "refused"
                else:
                    result[port] = errno.errorcode.get(err, str(err))
                s.close()
        for s, port in pending.values():
            result[port] = "filtered"
            s.close()
        ep.close()
    return result


def udp_scan(target, source, ports, count, rate):
    """port -> how it answered ("udp reply", "icmp type/code"); silent ports absent."""
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((source, 0))
    udp.setblocking(False)
    sport = udp.getsockname()[1]
    target_b, source_b = socket.inet_aton(target), socket.inet_aton(source)
    answered = {}

    def drain():
        while True:
            try:
                pkt = icmp.recv(65535)
            except BlockingIOError:
                break
            ihl = (pkt[0] & 15) * 4
            if len(pkt) < ihl + 8 + 20 + 4 or pkt[ihl] != 3:  # destination unreachable
                continue
            inner = pkt[ihl + 8:]
            iihl = (inner[0] & 15) * 4
            if inner[9] != socket.IPPROTO_UDP or inner[12:16] != source_b or inner[16:20] != target_b:
                continue
            if len(inner) < iihl + 4:
                continue
            isport, idport = struct.unpack("!HH", inner[iihl:iihl + 4])
            if isport == sport:
                answered.setdefault(idport, "icmp %d/%d" % (pkt[ihl], pkt[ihl + 1]))
        while True:
            try:
                _, (addr, port) = udp.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError:
                continue
            if addr == target:
                answered.setdefault(port, "udp reply")

    interval = 1.0 / rate
    t0 = time.monotonic()
    n = 0
    for _ in range(count):
        for port in ports:
            try:
                udp.sendto(PROBE, (target, port))
            except BlockingIOError:
                select.select([], [udp], [], 1.0)
                udp.sendto(PROBE, (target, port))
            n += 1
            ahead = t0 + n * interval - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if n % 64 == 0:
                drain()
    deadline = time.monotonic() + UDP_TAIL
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        select.select([icmp, udp], [], [], left)
        drain()
    icmp.close()
    udp.close()
    return answered


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--tcp", default="", help="TCP ports to scan")
    ap.add_argument("--udp", default="", help="UDP ports to scan")
    ap.add_argument("--udp-count", type=int, default=1, help="datagrams per UDP port")
    ap.add_argument("--udp-rate", type=float, default=1000.0, help="UDP datagrams per second")
    a = ap.parse_args()
    tcp_ports, udp_ports = parse_ports(a.tcp), parse_ports(a.udp)
    # one descriptor per TCP port in flight
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = TCP_BATCH + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    t0 = time.monotonic()
    if tcp_ports:
        res = tcp_scan(a.target, a.source, tcp_ports)
        by = {}
        for port, state in res.items():
            by.setdefault(state, []).append(port)
        print("TCP %s -> %s, %d ports in %.1fs:" % (a.source, a.target, len(tcp_ports), time.monotonic() - t0))
        for state in sorted(by):
            print("  %-9s %5d  %s" % (state, len(by[state]), ranges(by[state]) if len(by[state]) < 200 else "(many)"))
        print("tcp_open=" + ranges(by.get("open", [])))
        print("tcp_refused=" + ranges([p for s, ps in by.items() if s not in ("open", "filtered") for p in ps]))
    if udp_ports:
        t1 = time.monotonic()
        ans = udp_scan(a.target, a.source, udp_ports, a.udp_count, a.udp_rate)
        print("UDP %s -> %s, %d ports x %d in %.1fs:" % (a.source, a.target, len(udp_ports), a.udp_count,
                                                         time.monotonic() - t1))
        kinds = {}
        for port, how in ans.items():
            kinds.setdefault(how, []).append(port)
        for how in sorted(kinds):
            print("  answered (%s) %5d  %s" % (how, len(kinds[how]), ranges(kinds[how]) if len(kinds[how]) < 200 else "(many)"))
        print("  silent %5d" % (len(udp_ports) - len([p for p in ans if p in set(udp_ports)])))
        print("udp_answered=" + ranges(ans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
