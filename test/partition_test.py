"""Network partitions (docs/cluster.md, "Partitions"), on real bin/kraken
nodes, each in a network namespace of its own (test/netns.py): proxy p1,
cores c1 and c2; p1 and c1 each joined through c2 only, so nothing but
Kraken itself reconnects them after a partition. The nodes run with
net_ticktime 4 so that distribution, too, gives up on a cut connection
during the test (it would take about a minute by default). Three
partitions, one after the other, each healed (every link up again) before
the next:

proxy_core: p1 <-> c1 cut both ways (packets silently dropped); c2 still
reaches both. Checked:
  - within 3 s p1's clients holding a topic of c1 (Kraken and Redis) are
    disconnected, with a log line saying why, and p1 drops c1 from its view;
  - nobody else is disturbed: p1's client of a c2 topic, the clients of c1's
    topic on c1 and on c2 keep receiving, c1's own client's entries too;
  - a publisher on p1 of c1's topic, publishing all along: every publish
    answered STORED, before or after the cut, reaches the subscribers on c1
    and c2 exactly once (acknowledged publishes: STORED only once c1 has
    it), and every other one is answered SERVER_ERROR cluster core
    unavailable (reaching them at most once: one held in the stalled link
    when p1 acted may have arrived, docs/cluster.md);
  - a new subscriber of c1's topic on p1 during the partition gets every
    entry c1's client publishes, or is refused (it used to be subscribed at
    c2, which does not relay c1's entries: silent loss);
  - c1 sees p1 silent; c2 sees nothing wrong (no member lost: Kraken nodes
    run with prevent_overlapping_partitions false, see bin/kraken);
  - after the heal (and after distribution gave up on p1 <-> c1), p1 and c1
    reconnect by themselves, c1 is live in p1's view with its link up, and
    serves p1's clients again.
two_cores: c1 <-> c2 cut; p1 reaches both. proxy_alone: p1 cut from both
cores. In each, publishers on the nodes and subscribers of both cores'
topics on every node, before and during the partition, and the issue's
rule checked for every subscriber (check_rule): each entry at most once;
one still connected has every entry of its topic answered STORED after it
subscribed; one disconnected was told (its subscribe refused, or a log
line of its node).

Needs root, `ip` and `nft`; without them it fails, saying why. About 70 s.
PARTITION_ONLY=proxy_core,two_cores,proxy_alone runs only those.
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
from kraken_text import KrakenText  # noqa: E402

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

class Client(KrakenText):
    def __init__(self, addr, port=PORT):
        super().__init__(addr, port)

    def publish(self, topic, payload):
        return self.set(b"publish", b"MESSAGE %s %d\r\n%s\r\n" % (topic, len(payload), payload))

    def poll(self):
        """[(topics, payload)] queued for this client."""
        return self.get_messages()

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

    def log_lines(self, pattern, since=0.0):
        """[(unix time, line)] of the console log matching pattern, logged at
        `since` (unix time) or later: a wait after a cut must not be met by a
        line of an earlier case."""
        out = []
        try:
            text = open(self.log, errors="replace").read()
        except OSError:
            return out
        for line in text.splitlines():
            if re.search(pattern, line):
                ts = datetime.datetime.fromisoformat(line.split(" ", 1)[0])
                if ts.timestamp() >= since:
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
    """Publishes entries 0, 1, 2... on addr, one at a time, every 20 ms,
    entry k to topics[k % len(topics)], payload <tag><k>; records (seq,
    topic, time sent, reply); reconnects after an error."""

    def __init__(self, addr, topics, tag=b"e"):
        super().__init__(daemon=True)
        self.addr, self.topics, self.tag = addr, list(topics), tag
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
            topic = self.topics[seq % len(self.topics)]
            sent = time.time()
            try:
                r = c.publish(topic, b"%s%d" % (self.tag, seq))
            except (ConnectionError, OSError) as e:
                r = b"closed: %s" % str(e).encode()
            self.log.append((seq, topic, sent, r))
            seq += 1
            if r != b"STORED":
                c.close()
                c = None
            time.sleep(0.02)
        if c:
            c.close()

    def stored(self, topic, after=0.0, before=float("inf")):
        """Payloads of the entries to topic answered STORED, sent in (after, before)."""
        return {b"%s%d" % (self.tag, s) for s, t, sent, r in self.log
                if r == b"STORED" and t == topic and after < sent < before}

    def refused(self):
        return sum(1 for _, _, _, r in self.log if r != b"STORED")


class Sub:
    """A Kraken subscriber (polling) of one topic on a node, and what it got.
    A refused subscribe (the cluster error, then the close) counts as a
    disconnection at once: the client knows."""

    def __init__(self, node, topic, name):
        self.node, self.topic, self.name = node, topic, name
        self.got, self.closed, self.refused = [], None, None
        self.c = Client(node.addr)
        r = self.c.set(b"subscribe", topic)
        self.at = time.time()
        if r != b"STORED":
            self.refused, self.closed = r, self.at
            self.c.close()

    def poll(self):
        if self.closed is None:
            try:
                self.got += self.c.poll()
            except (ConnectionError, OSError):
                self.closed = time.time()
                self.c.close()
        return self

    def payloads(self):
        mine = [p for ts, p in self.got if self.topic in ts]
        dups = sorted({p for p in mine if mine.count(p) > 1})
        assert not dups, "%s got entries twice: %r" % (self.name, dups[:10])
        return set(mine)

    def state(self):
        if self.refused:
            return "refused (%s)" % self.refused.decode(errors="replace")
        if self.closed is not None:
            return "disconnected"
        return "connected"


def poll_all(subs, secs, step=0.2):
    end = time.time() + secs
    while True:
        for s in subs:
            s.poll()
        if time.time() >= end:
            return
        time.sleep(step)


def check_rule(subs, pubs):
    """The issue's rule: every subscriber got every entry at most once, and
    one that is still connected got every entry of its topic answered
    STORED after it subscribed.  One that was disconnected must have been
    told why: the refusal of its subscribe, or a log line of its node."""
    for s in subs:
        have = s.payloads()
        if s.closed is None:
            for pub in pubs:
                missed = pub.stored(s.topic, after=s.at) - have
                when = sorted(time.strftime("%H:%M:%S", time.gmtime(sent)) + ".%03d" % (
                    sent * 1000 % 1000) for seq, t, sent, r in pub.log
                    if b"%s%d" % (pub.tag, seq) in missed)
                assert not missed, (
                    "silent loss: %s (on %s, topic %s, connected all along) missed %d entries "
                    "answered STORED to the publisher on %s, e.g. %r, sent at %s (UTC)" % (
                        s.name, s.node.name, s.topic.decode(), len(missed), pub.addr,
                        sorted(missed)[:5], ", ".join(when[:5])))
        elif not s.refused:
            why = [line for ts, line in s.node.log_lines(
                r"holds topic %s .*disconnecting it" % re.escape(s.topic.decode()))
                if ts >= s.at - 1]
            assert why, "%s was disconnected without a log line on %s saying why" % (
                s.name, s.node.name)


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


def topics_of(c1, c2):
    cores = [c1.full, c2.full]
    cands = [b"part_%d" % i for i in range(200)]
    t1 = next(t for t in cands if owner(t, cores) == c1.full)   # c1's topic
    t2 = next(t for t in cands if owner(t, cores) == c2.full)   # c2's topic
    return t1, t2


def links_up(p1, c1, c2):
    """Every link up: p1's to both cores, and the cores' to each other."""
    return (all(p1.status().get(n.full, ("",))[0] == "up" for n in (c1, c2)) and
            c1.status().get(c2.full, ("",))[0] == "up" and
            c2.status().get(c1.full, ("",))[0] == "up")


def proxy_core(lab, p1, c1, c2):
    """p1 <-> c1 cut; c2 reaches both."""
    wait_until(lambda: links_up(p1, c1, c2), 30, "every link up")
    t1, t2 = topics_of(c1, c2)
    x = Client(p1.addr); x.subscribe(t2)                        # stays
    y = Client(p1.addr); y.subscribe(t1)                        # disconnected
    ry = redis_subscriber(p1.addr, t1)                          # disconnected
    z = Client(c2.addr); z.subscribe(t1)                        # stays
    w = Client(c1.addr); w.subscribe(t1)                        # stays
    # One upstream subscription at each core: the owners computed here are p1's.
    wait_until(lambda: p1.status().get(c1.full, ("", ""))[1] == "1" and
               p1.status().get(c2.full, ("", ""))[1] == "1", 15, "p1 holding t1 at c1, t2 at c2")
    time.sleep(0.3)
    pub, pub2 = Publisher(p1.addr, [t1]), Publisher(p1.addr, [t2])
    pubc1 = Publisher(c1.addr, [t1], b"c")   # c1's own client, publishing all along
    pub.start(); pub2.start(); pubc1.start()
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
    wait_until(lambda: p1.log_lines(r"core %s left the live set" % re.escape(c1.full), t0),
               max(0.5, t0 + 3.0 - time.time()), "p1 dropping c1 from its view within 3 s")
    left = p1.log_lines(r"core %s left the live set" % re.escape(c1.full), t0)[0][0] - t0
    print("p1 dropped c1 from its view after %.2f s" % left)
    # A new subscriber of c1's topic on p1 while the partition lasts (the
    # interim core c2 cannot chain it to c1): it must get what c1's client
    # publishes, or be refused.
    n = Sub(p1, t1, "a new subscriber of c1's topic on p1 during the partition")
    print("%s: %s" % (n.name, n.state()))
    # The same through the Redis port: SUBSCRIBE and KRAKEN.RETROSUBSCRIBE.
    if n.refused:
        rn = socket.create_connection((p1.addr, REDIS_PORT), timeout=10)
        for args in ([b"SUBSCRIBE", t1],
                     [b"KRAKEN.RETROSUBSCRIBE", b"%d" % int(time.time() - 5), t1]):
            rn.sendall(b"*%d\r\n" % len(args) +
                       b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
            got = b""
            while not got.endswith(b"\r\n"):
                got += rn.recv(4096)
            assert got == b"-ERR cluster core unavailable: not subscribed\r\n", (args[0], got)
        rn.close()
        print("the same through the Redis port: refused (SUBSCRIBE, KRAKEN.RETROSUBSCRIBE)")
    wait_until(lambda: c1.log_lines(r"proxy %s silent for" % re.escape(p1.full)), 5,
               "c1 seeing p1 silent")
    # Distribution gives up too (net_ticktime 4): nodedown on both sides.
    down_p1 = r"Node %s not responding" % re.escape(c1.full)
    deadline = time.time() + 15
    while not (p1.log_lines(down_p1) and
               c1.log_lines(r"Node %s not responding" % re.escape(p1.full))):
        assert time.time() < deadline, "timed out waiting for distribution p1 <-> c1 to go down"
        poll_all([n], 0.2)
    print("distribution p1 <-> c1 down after %.1f s" % (p1.log_lines(down_p1)[0][0] - t0))
    zm, wm = z.poll(), w.poll()   # still connected (raises if not)
    n.poll()
    if n.closed is None:   # it had 1.5 s for each entry c1's client stored
        missed = pubc1.stored(t1, after=n.at, before=time.time() - 1.5) - n.payloads()
        assert not missed, (
            "silent loss during the partition: p1's new subscriber of c1's topic missed %d of "
            "c1's client's entries (e.g. %r)" % (len(missed), sorted(missed)[:5]))
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
    for p in (pub, pub2, pubc1):
        p.stop.set()
    for p in (pub, pub2, pubc1):
        p.join(15)

    # Nobody else was disturbed, and nothing stored was lost once p1 acted.
    zd, wd = zm + drain(z), wm + drain(w)
    zs, ws = seqs(zd, t1), seqs(wd, t1)
    xs = seqs(drain(x), t2)
    stored2 = {s for s, _, _, r in pub2.log if r == b"STORED"}
    assert stored2 <= xs, "p1's client of c2's topic missed %d entries" % len(stored2 - xs)
    for name, got in (("c2", zd), ("c1", wd)):
        mine = [p for ts, p in got if t1 in ts and p.startswith(b"c")]
        missed = pubc1.stored(t1) - set(mine)
        assert not missed and len(mine) == len(set(mine)), (
            "c1's client's entries on %s: %d missed, %d twice" % (
                name, len(missed), len(mine) - len(set(mine))))
    odd = [(s, r) for s, _, _, r in pub.log if r != b"STORED" and not r.startswith(UNAVAILABLE)]
    assert not odd, "publishes answered neither STORED nor unavailable: %r" % odd[:5]
    window, refused, held = 0, 0, []
    for s, _, sent, r in pub.log:
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
    n.poll()
    check_rule([n], [pubc1, pub])
    print("%s, at the end: %s" % (n.name, n.state()))
    for cl in (x, z, w, v, u):
        cl.close()
    if n.closed is None:
        n.c.close()


def heal(lab, pairs, t0, subs, nodes):
    """Heals the cuts, then polls subs until every link is up again."""
    for a, b in pairs:
        lab.heal(a, b)
    print("healed after %.1f s" % (time.time() - t0))
    deadline = time.time() + 30
    while not links_up(*nodes):
        assert time.time() < deadline, "links not all up 30 s after the heal"
        poll_all(subs, 0.5)
    print("every link up %.1f s after the heal" % (time.time() - t0))


def finish(pubs, subs):
    """Stops the publishers, takes what is still on its way, prints each
    subscriber's state."""
    for p in pubs:
        p.stop.set()
    for p in pubs:
        p.join(15)
    poll_all(subs, 1.5)
    for s in subs:
        print("  %-45s %s" % (s.name, s.state()))


def traffic(p1, c1, c2):
    """A topic of each core; a subscriber of each on every node; a publisher
    on every node alternating between them, started.  (t1, t2, subs, pubs)."""
    t1, t2 = topics_of(c1, c2)
    subs = [Sub(node, t, "%s's subscriber of %s" % (node.name, t.decode()))
            for node in (p1, c1, c2) for t in (t1, t2)]
    pubs = [Publisher(node.addr, [t1, t2], node.name.encode() + b"-") for node in (p1, c1, c2)]
    for p in pubs:
        p.start()
    return t1, t2, subs, pubs


def two_cores(lab, p1, c1, c2):
    """c1 <-> c2 cut; p1 reaches both: the cores' views disagree."""
    wait_until(lambda: links_up(p1, c1, c2), 30, "every link up")
    t1, t2, subs, pubs = traffic(p1, c1, c2)
    poll_all(subs, 1.0)
    t0 = lab.cut("c1", "c2")
    print("cut c1 <-> c2")
    poll_all(subs, 3.0)
    # New subscribers while the partition lasts, on every node.
    late = [Sub(node, t, "%s's subscriber of %s, during" % (node.name, t.decode()))
            for node in (p1, c1, c2) for t in (t1, t2)]
    subs += late
    poll_all(subs, 3.0)
    heal(lab, [("c1", "c2")], t0, subs, (p1, c1, c2))
    poll_all(subs, 2.0)
    finish(pubs, subs)
    print("  publishes refused: %s" % ", ".join(
        "on %s %d of %d" % (n.name, p.refused(), len(p.log)) for n, p in zip((p1, c1, c2), pubs)))
    check_rule(subs, pubs)
    for s in subs:
        if s.closed is None:
            s.c.close()


def proxy_alone(lab, p1, c1, c2):
    """p1 cut from both cores."""
    wait_until(lambda: links_up(p1, c1, c2), 30, "every link up")
    t1, t2 = topics_of(c1, c2)
    before = [Sub(node, t1, "%s's subscriber of %s" % (node.name, t1.decode()))
              for node in (p1, c1, c2)]
    pubs = [Publisher(c2.addr, [t1, t2], b"c2-"), Publisher(p1.addr, [t1], b"p1-")]
    for p in pubs:
        p.start()
    poll_all(before, 1.0)
    t0 = lab.cut("p1", "c1")
    lab.cut("p1", "c2")
    print("cut p1 from c1 and c2")
    wait_until(lambda: p1.log_lines(r"core %s left the live set" % re.escape(c2.full), t0) and
               p1.log_lines(r"core %s left the live set" % re.escape(c1.full), t0),
               5, "p1 dropping both cores")
    poll_all(before, 0.5)
    during = [Sub(p1, t, "p1's subscriber of %s, alone" % t.decode()) for t in (t1, t2)]
    subs = before + during
    poll_all(subs, 2.5)
    heal(lab, [("p1", "c1"), ("p1", "c2")], t0, subs, (p1, c1, c2))
    after = Sub(p1, t1, "p1's subscriber of %s, after" % t1.decode())
    subs.append(after)
    poll_all(subs, 2.0)
    finish(pubs, subs)
    print("  publishes refused: on c2 %d of %d, on p1 %d of %d" % (
        pubs[0].refused(), len(pubs[0].log), pubs[1].refused(), len(pubs[1].log)))
    assert after.closed is None and after.payloads(), "p1 does not serve c1's topic after the heal"
    check_rule(subs, pubs)
    for s in subs:
        if s.closed is None:
            s.c.close()


def redis_call(addr, *args):
    """One command on the Redis port; the first line of the reply."""
    r = socket.create_connection((addr, REDIS_PORT), timeout=10)
    r.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    got = b""
    while not got.endswith(b"\r\n"):
        got += r.recv(4096)
    r.close()
    return got


def core_alone(lab, p1, c1, c2):
    """c1 cut from p1 and c2: c1 on the minority side."""
    wait_until(lambda: links_up(p1, c1, c2), 30, "every link up")
    t1, t2, before, pubs = traffic(p1, c1, c2)
    poll_all(before, 1.0)
    t0 = lab.cut("c1", "p1")
    lab.cut("c1", "c2")
    print("cut c1 from p1 and c2")
    wait_until(lambda: c2.log_lines(r"core %s left the live set" % re.escape(c1.full), t0) and
               p1.log_lines(r"core %s left the live set" % re.escape(c1.full), t0), 5,
               "p1 and c2 dropping c1")
    poll_all(before, 1.0)
    # While it lasts: c1 refuses its clients, on both ports; c1's topic
    # moved to c2, where p1's and c2's new subscribers get it (retrying:
    # for a moment after the move a node still refuses c1's topics, until
    # the others' heartbeats no longer list c1).
    wait_until(lambda: [1 for ts, _ in c1.log_lines(r"no quorum") if ts >= t0], 5,
               "a log line on c1 saying it has no quorum")
    print("c1 says: " + [line for ts, line in c1.log_lines(r"no quorum") if ts >= t0][0]
          .split(": ", 1)[1])
    during = [Sub(c1, t, "c1's subscriber of %s, during" % t.decode()) for t in (t1, t2)]
    for node in (p1, c2):
        for t in (t1, t2):
            for _ in range(20):
                s = Sub(node, t, "%s's subscriber of %s, during" % (node.name, t.decode()))
                if not s.refused:
                    break
                poll_all(before + during, 0.3)
            during.append(s)
    subs = before + during
    print("new subscribers on every node %.1f s after the cut" % (time.time() - t0))
    got = redis_call(c1.addr, b"PUBLISH", t1, b"x")
    poll_all(subs, 3.0)
    heal(lab, [("c1", "p1"), ("c1", "c2")], t0, subs, (p1, c1, c2))
    after = Sub(c1, t1, "c1's subscriber of %s, after" % t1.decode())
    subs.append(after)
    poll_all(subs, 2.0)
    finish(pubs, subs)
    print("  publishes refused: %s" % ", ".join(
        "on %s %d of %d" % (n.name, p.refused(), len(p.log)) for n, p in zip((p1, c1, c2), pubs)))
    assert got == b"-ERR cluster core unavailable: not published\r\n", (
        "a Redis PUBLISH on c1 while it was cut off: %r" % got)
    for s in during:
        if s.node is c1:
            assert s.refused, "%s was not refused" % s.name
        else:
            assert s.closed is None and s.payloads(), "%s: %s, %d entries" % (
                s.name, s.state(), len(s.payloads()))
    for s in before:
        if s.node is c1:
            assert s.closed is not None, "%s stayed connected on the minority side" % s.name
    assert after.closed is None and after.payloads(), "c1 does not serve its topic after the heal"
    check_rule(subs, pubs)
    for s in subs:
        if s.closed is None:
            s.c.close()


def scenario(lab, p1, c1, c2):
    only = os.environ.get("PARTITION_ONLY", "")
    for name, f in (("proxy_core", proxy_core), ("two_cores", two_cores),
                    ("proxy_alone", proxy_alone), ("core_alone", core_alone)):
        if only and name not in only.split(","):
            continue
        t = time.time()
        print("---- %s: %s" % (name, f.__doc__))
        f(lab, p1, c1, c2)
        print("---- %s: OK (%.0f s)" % (name, time.time() - t))


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
