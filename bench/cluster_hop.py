#!/usr/bin/env python3
"""Rough latency of one proxy hop (docs/cluster.md, "First measurements").

Not part of `make bench` (plan item 6 replaces it): a publisher on a core
publishes entries whose payload is the send time, at a fixed rate; one
push-mode subscriber on the core (direct) and one on a proxy (one hop) record
the delay.  One Python thread drives every socket, so absolute figures
include the client's own delays; the difference between the two rows is the
hop.  Usage, with a core and a proxy running (see docs/cluster.md):

    python3 bench/cluster_hop.py CORE_PORT PROXY_PORT RATE SECONDS
"""
import socket, sys, time, selectors, statistics
core, proxy, rate, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def conn(p):
    s = socket.create_connection(("127.0.0.1", p)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); return s
def req(s, cmd, data):
    s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (cmd, len(data), data))
    assert s.recv(64) == b"STORED\r\n"
subs = {"direct": conn(core), "hop": conn(proxy)}
for s in subs.values():
    req(s, b"push", b"on"); req(s, b"subscribe", b"lat")
time.sleep(1.0)
pub = conn(core)
sel = selectors.DefaultSelector()
bufs, lat = {}, {k: [] for k in subs}
for k, s in subs.items():
    s.setblocking(False); sel.register(s, selectors.EVENT_READ, k); bufs[k] = b""
pub.setblocking(False); sel.register(pub, selectors.EVENT_READ, "pub")
n, t0 = 0, time.perf_counter()
end = t0 + secs
while time.perf_counter() < end + 0.5:
    now = time.perf_counter()
    while now < end and n < (now - t0) * rate:
        p = b"%.9f" % time.perf_counter()
        d = b"MESSAGE lat %d\r\n%s\r\n" % (len(p), p)
        pub.sendall(b"set publish 0 0 %d noreply\r\n%s\r\n" % (len(d), d)); n += 1
    for key, _ in sel.select(timeout=0.0005):
        k = key.data
        data = key.fileobj.recv(1 << 20)
        if k == "pub": continue
        t = time.perf_counter()
        bufs[k] += data
        lines = bufs[k].split(b"\r\n"); bufs[k] = lines.pop()
        for i, l in enumerate(lines):
            if l.startswith(b"MESSAGE"):
                pass
            elif l and l[0:1].isdigit() and b"." in l:
                lat[k].append((t - float(l)) * 1000)
for k, v in lat.items():
    v.sort()
    print("%-6s n=%d p50=%.3f ms p99=%.3f ms max=%.3f ms" % (k, len(v), v[len(v)//2], v[int(len(v)*0.99)], v[-1]))
print("published", n)
