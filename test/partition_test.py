"""A network partition between a proxy and a core (docs/cluster.md,
"Partitions"), on real bin/kraken nodes, each in a network namespace of its
own (test/netns.py): proxy p1, cores c1 and c2; p1 and c1 each joined
through c2 only, so nothing but Kraken itself reconnects them after the
partition. The nodes run with net_ticktime 4 so that distribution, too,
gives up on the cut connection during the test (it would take about a
minute by default).

p1 <-> c1 is cut both ways (packets silently dropped); c2 still reaches
both. Checked:
  - within 3 s p1's clients holding a topic of c1 (Kraken and Redis) are
    disconnected, with a log line saying why, and p1 drops c1 from its view;
  - nobody else is disturbed: p1's client of a c2 topic, the clients of c1's
    topic on c1 and on c2 keep receiving;
  - a publisher on p1 of c1's topic, publishing all along: every publish
    answered STORED, before or after the cut, reaches the subscribers on c1
    and c2 exactly once (acknowledged publishes: STORED only once c1, or
    c2 after p1 acted, has it), and every other one is answered SERVER_ERROR
    cluster core unavailable (reaching them at most once: one held in the
    stalled link when p1 acted may have arrived, docs/cluster.md);
  - c1 sees p1 silent; c2 sees nothing wrong (no member lost: Kraken nodes
    run with prevent_overlapping_partitions false, see bin/kraken);
  - after the heal (and after distribution gave up on p1 <-> c1), p1 and c1
    reconnect by themselves, c1 is live in p1's view with its link up, and
    serves p1's clients again.

Needs root, `ip` and `nft`; without them it fails, saying why. About 45 s.
    /usr/bin/python3 test/partition_test.py
    KRAKEN_ENGINE=$PWD/priv/kraken_engine_asan /usr/bin/python3 test/partition_test.py"""
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KRAKEN = os.path.join(ROOT, "bin", "kraken")
PORT, REDIS_PORT = 12355, 6379
TICK = ["-kernel", "net_ticktime", "4"]
KEEP = "/tmp/kraken_partition_test_logs"
UNAVAILABLE = b"SERVER_ERROR cluster core unavailable"
M64 = (1 << 64) - 1


# ---- ownership: cluster_hash.c, rendezvous hashing ----

def fnv(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & M64
    return h


def score(t, n):
    z = t ^ n
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def owner(topic, cores):
    # the highest score; ties to the smaller name
    return max(cores, key=lambda n: (score(fnv(topic), fnv(n.encode())),
                                     tuple(-b for b in n.encode()) + (1,)))


# ---- a Kraken client (polling) and a Redis subscriber ----

class Client:
    def __init__(self, addr, port=PORT):
        self.s = socket.create_connection((addr, port), timeout=10)
        self.buf = b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def set(self, cmd, data):
        self.s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (cmd, len(data), data))
        return self.line()

    def subscribe(self, *topics):
        r = self.set(b"subscribe", b" ".join(topics))
        assert r == b"STORED", r

    def publish(self, topic, payload):
        return self.set(b"publish", b"MESSAGE %s %d\r\n%s\r\n" % (topic, len(payload), payload))

    def poll(self):
        """[(topics, payload)] queued for this client."""
        self.s.sendall(b"get messages\r\n")
        head = self.line()
        if head == b"END":
            return []
        m = re.match(rb"VALUE messages 0 (\d+)$", head)
        assert m, head
        block = self.exact(int(m.group(1)) + 2)
        assert self.line() == b"END"
        out = []
        while block:
            hdr, block = block.split(b"\r\n", 1)
            parts = hdr.split(b" ")
            n = int(parts[-1])
            out.append((tuple(parts[1:-1]), block[:n]))
            block = block[n + 2:]
        return out

    def closed_within(self, t0, secs):
        """Seconds from t0 until the server closed this connection (after an
        error line, if any), or None if it did not within secs."""
        self.s.settimeout(0.05)
        while time.time() < t0 + secs:
            try:
                if not self.s.recv(65536):
                    return time.time() - t0
            except socket.timeout:
                pass
            except OSError:
                return time.time() - t0
        return None

    def close(self):
        self.s.close()


def redis_subscriber(addr, channel):
    s = socket.create_connection((addr, REDIS_PORT), timeout=10)
    s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
    want = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
    got = b""
    while len(got) < len(want):
        got += s.recv(4096)
    assert got == want, got
    c = Client.__new__(Client)
    c.s, c.buf = s, b""
    return c


# ---- the nodes ----

class Node:
    def __init__(self, lab, name, role, join, tmp, inetrc):
        self.lab, self.name, self.role, self.join, self.tmp = lab, name, role, join, tmp
        self.host = lab.tag + name
        self.full = "%s@%s" % (name, self.host)
        self.addr = lab.addr[name]
        self.log = os.path.join(tmp, name + ".console.log")
        self.env = dict(os.environ, KRAKEN_NODE_NAME=self.full, ERL_INETRC=inetrc,
                        KRAKEN_LOG_DIR=tmp)
        self.stopped = False

    def kraken(self, *args, timeout=90):
        r = subprocess.run(["ip", "netns", "exec", self.lab.ns[self.name], KRAKEN] + list(args),
                           env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace")

    def start(self, joins):
        args = ["start", "-kraken", "tcp_server_port", str(PORT),
                "-kraken", "listen_ip", '"%s"' % self.addr,
                "-kraken", "redis_port", str(REDIS_PORT), "-kraken", "role", self.role,
                "-kraken", "cluster_nodes", "['%s']" % joins.full] + TICK
        engine = os.environ.get("KRAKEN_ENGINE")
        if engine:
            args += ["-kraken", "engine_executable", '"%s"' % engine]
        rc, out = self.kraken(*args)
        if rc != 0:
            raise AssertionError("%s did not start: %s" % (self.name, out))

    def status(self):
        """{node: (link, upstream_topics)} from bin/kraken cluster_status."""
        rc, out = self.kraken("cluster_status", *TICK, timeout=30)
        rows = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 5 and "@" in f[0]:
                i = 4 if f[3] in ("self", "static") else 5   # HEARD is 1 or 2 words
                rows[f[0]] = (f[i], f[i + 1] if len(f) > i + 1 else "-")
        return rows

    def log_lines(self, pattern):
        """[(unix time, line)] of the console log matching pattern."""
        out = []
        try:
            text = open(self.log, errors="replace").read()
        except OSError:
            return out
        for line in text.splitlines():
            if re.search(pattern, line):
                ts = datetime.datetime.fromisoformat(line.split(" ", 1)[0])
                out.append((ts.timestamp(), line))
        return out


def wait_until(f, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if f():
            return
        time.sleep(0.2)
    raise AssertionError("timed out (%d s) waiting for %s" % (secs, what))


class Publisher(threading.Thread):
    """Publishes entries 0, 1, 2... to topic on addr, one at a time, every
    20 ms; records (seq, time sent, reply); reconnects after an error."""

    def __init__(self, addr, topic):
        super().__init__(daemon=True)
        self.addr, self.topic = addr, topic
        self.stop = threading.Event()
        self.log = []

    def run(self):
        c, seq = None, 0
        while not self.stop.is_set():
            try:
                c = c or Client(self.addr)
            except OSError:
                time.sleep(0.1)   # at the end, the node stopping
                continue
            sent = time.time()
            try:
                r = c.publish(self.topic, b"e%d" % seq)
            except (ConnectionError, OSError) as e:
                r = b"closed: %s" % str(e).encode()
            self.log.append((seq, sent, r))
            seq += 1
            if r != b"STORED":
                c.close()
                c = None
            time.sleep(0.02)
        if c:
            c.close()


def drain(client, quiet=1.0, secs=15):
    """Everything client gets until nothing came for `quiet` seconds."""
    got, last, end = [], time.time(), time.time() + secs
    while time.time() < end and time.time() - last < quiet:
        m = client.poll()
        if m:
            got += m
            last = time.time()
        time.sleep(0.1)
    return got


def seqs(msgs, topic):
    out = [int(p[1:]) for ts, p in msgs if topic in ts and re.match(rb"e\d+$", p)]
    assert len(out) == len(set(out)), "duplicates: %r" % sorted(s for s in out if out.count(s) > 1)
    return set(out)


def scenario(lab, p1, c1, c2):
    cores = [c1.full, c2.full]
    wait_until(lambda: all(p1.status().get(n, ("",))[0] == "up" for n in cores), 30,
               "p1's links to c1 and c2 up")
    cands = [b"part_%d" % i for i in range(200)]
    t1 = next(t for t in cands if owner(t, cores) == c1.full)   # c1's topic
    t2 = next(t for t in cands if owner(t, cores) == c2.full)   # c2's topic
    x = Client(p1.addr); x.subscribe(t2)                        # stays
    y = Client(p1.addr); y.subscribe(t1)                        # disconnected
    ry = redis_subscriber(p1.addr, t1)                          # disconnected
    z = Client(c2.addr); z.subscribe(t1)                        # stays
    w = Client(c1.addr); w.subscribe(t1)                        # stays
    # One upstream subscription at each core: the owners computed here are p1's.
    wait_until(lambda: p1.status().get(c1.full, ("", ""))[1] == "1" and
               p1.status().get(c2.full, ("", ""))[1] == "1", 15, "p1 holding t1 at c1, t2 at c2")
    time.sleep(0.3)
    pub, pub2 = Publisher(p1.addr, t1), Publisher(p1.addr, t2)
    pub.start(); pub2.start()
    time.sleep(1.0)

    t0 = lab.cut("p1", "c1")
    print("cut p1 <-> c1 (%.2f s to install both rules)" % (time.time() - t0))
    dy, dry = y.closed_within(t0, 3.0), ry.closed_within(t0, 3.0)
    assert dy is not None, "p1's Kraken client of c1's topic not disconnected within 3 s"
    assert dry is not None, "p1's Redis client of c1's topic not disconnected within 3 s"
    acted = t0 + min(dy, dry)
    print("p1's holders of c1's topic disconnected after %.2f s (Kraken), %.2f s (Redis)"
          % (dy, dry))
    pattern = r"holds topic %s owned by core %s, " % (t1.decode(), re.escape(c1.full))
    wait_until(lambda: p1.log_lines(pattern), 3,
               "a log line on p1 saying why its clients of c1's topic were disconnected")
    why = p1.log_lines(pattern)
    print("p1 says: " + why[0][1].split(": ", 1)[1])
    wait_until(lambda: p1.log_lines(r"core %s left the live set" % re.escape(c1.full)),
               max(0.5, t0 + 3.0 - time.time()), "p1 dropping c1 from its view within 3 s")
    left = p1.log_lines(r"core %s left the live set" % re.escape(c1.full))[0][0] - t0
    print("p1 dropped c1 from its view after %.2f s" % left)
    wait_until(lambda: c1.log_lines(r"proxy %s silent for" % re.escape(p1.full)), 5,
               "c1 seeing p1 silent")
    # Distribution gives up too (net_ticktime 4): nodedown on both sides.
    down_p1 = r"Node %s not responding" % re.escape(c1.full)
    wait_until(lambda: p1.log_lines(down_p1) and
               c1.log_lines(r"Node %s not responding" % re.escape(p1.full)), 15,
               "distribution between p1 and c1 down")
    print("distribution p1 <-> c1 down after %.1f s" % (p1.log_lines(down_p1)[0][0] - t0))
    zm, wm = z.poll(), w.poll()   # still connected (raises if not)
    healed = time.time()
    lab.heal("p1", "c1")
    print("healed after %.1f s" % (healed - t0))
    wait_until(lambda: p1.status().get(c1.full, ("",))[0] == "up", 30,
               "c1 live again in p1's view, link up")
    print("c1 back in p1's view, link up, %.1f s after the heal" % (time.time() - healed))
    # c1 serves p1's clients again: an entry published on c1 reaches a new
    # subscriber on p1 through p1's link to c1.
    v = Client(p1.addr); v.subscribe(t1)
    wait_until(lambda: p1.status().get(c1.full, ("", ""))[1] == "1", 15, "p1 holding t1 at c1")
    time.sleep(0.3)
    u = Client(c1.addr)
    assert u.publish(t1, b"from c1") == b"STORED"
    wait_until(lambda: any(p == b"from c1" for _, p in v.poll()), 5, "c1's entry on p1")
    time.sleep(0.5)
    pub.stop.set(); pub2.stop.set()
    pub.join(15); pub2.join(15)

    # Nobody else was disturbed, and nothing stored was lost once p1 acted.
    zs, ws = seqs(zm + drain(z), t1), seqs(wm + drain(w), t1)
    xs = seqs(drain(x), t2)
    stored2 = {s for s, _, r in pub2.log if r == b"STORED"}
    assert stored2 <= xs, "p1's client of c2's topic missed %d entries" % len(stored2 - xs)
    odd = [(s, r) for s, _, r in pub.log if r != b"STORED" and not r.startswith(UNAVAILABLE)]
    assert not odd, "publishes answered neither STORED nor unavailable: %r" % odd[:5]
    window, refused, held = 0, 0, []
    for s, sent, r in pub.log:
        if r != b"STORED":
            refused += 1
            if t0 - 0.2 <= sent < acted:
                held.append((s, sent - t0, s in zs, s in ws))
            else:
                assert s not in zs and s not in ws, "refused entry %d was delivered" % s
            continue
        window += t0 - 0.2 <= sent < acted
        assert s in zs and s in ws, (
            "entry %d, stored %.2f s after the cut, missing at %s" % (
                s, sent - t0, " and ".join(n for n, got in (("c2", zs), ("c1", ws))
                                           if s not in got)))
    print("publisher on p1: %d entries, none lost; %d refused (cluster core unavailable); "
          "%d stored in the %.1f s before p1 acted; answered the error while held in the "
          "stalled link (seq, sent after the cut, reached c2, reached c1): %r"
          % (len(pub.log), refused, window, acted - t0, held))
    lost = c2.log_lines(r"lost the connection to node|no longer live")
    lost = [line for ts, line in lost if ts >= t0]
    assert not lost, "c2 lost members during the partition: %s" % lost
    for cl in (x, z, w, v, u):
        cl.close()


def main():
    why = netns.check()
    if why:
        print("partition test: FAILED: cannot run: " + why)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))   # clean up on the way out
    lab = netns.Lab(["p1", "c1", "c2"])
    tmp = tempfile.mkdtemp(prefix="kraken_partition_")
    nodes = []
    t = time.time()
    try:
        lab.up()
        inetrc = os.path.join(tmp, "inetrc")
        with open(inetrc, "w") as f:
            for n in lab.nodes:
                f.write('{host, {%s}, ["%s"]}.\n' % (lab.addr[n].replace(".", ","), lab.tag + n))
            f.write("{lookup, [file, native]}.\n")
        p1 = Node(lab, "p1", "proxy", None, tmp, inetrc)
        c1 = Node(lab, "c1", "core", None, tmp, inetrc)
        c2 = Node(lab, "c2", "core", None, tmp, inetrc)
        nodes = [c1, c2, p1]
        starters = [threading.Thread(target=n.start, args=(j,)) for n, j in ((c1, c2), (c2, c1))]
        errors = []
        for s in starters:
            s.run = (lambda f: lambda: _catch(f, errors))(s.run)
            s.start()
        for s in starters:
            s.join()
        if errors:
            raise errors[0]
        p1.start(c2)
        scenario(lab, p1, c1, c2)
        stop(nodes)
        bad = [n.name for n in nodes
               if re.search(r"Sanitizer|runtime error:", open(n.log, errors="replace").read())]
        assert not bad, "sanitizer report in the log of %s" % ", ".join(bad)
        print("partition test: OK (%.0f s)" % (time.time() - t))
        return 0
    except Exception as e:   # noqa: BLE001 (any failure: report it, then clean up)
        print("partition test: FAILED: %s: %s" % (type(e).__name__, e))
        for n in nodes:
            print("---- last lines of %s's log" % n.name)
            try:
                print("".join(open(n.log, errors="replace").readlines()[-25:]))
            except OSError:
                pass
        return 1
    finally:
        stop(nodes)
        lab.close()
        shutil.rmtree(KEEP, ignore_errors=True)
        shutil.copytree(tmp, KEEP, ignore=shutil.ignore_patterns("inetrc"))
        shutil.rmtree(tmp, ignore_errors=True)
        print("nodes' logs kept in %s" % KEEP)


def stop(nodes):
    """bin/kraken stop of every node still up, in parallel (what is left
    is killed with its namespace)."""
    stoppers = [threading.Thread(target=n.kraken, args=("stop",), kwargs={"timeout": 30})
                for n in nodes if not n.stopped]
    for n in nodes:
        n.stopped = True
    for s in stoppers:
        s.start()
    for s in stoppers:
        s.join(35)


def _catch(f, errors):
    try:
        f()
    except Exception as e:   # reported by the main thread
        errors.append(e)


if __name__ == "__main__":
    sys.exit(main())
