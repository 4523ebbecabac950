"""A Kraken proxy in front of the original Erlang Kraken (docs/cluster.md,
"Static upstreams", and "Tests"): the original as a static `upstreams`
entry, which the proxy polls every `upstream_poll_ms` (it refuses push
mode). Not part of `make test`: the original is not in this repository.

    test/build_original.sh /path/to/kraken/source /tmp/kraken_original
    make test-original KRAKEN_ORIGINAL=/tmp/kraken_original

KRAKEN_ORIGINAL: a directory whose ebin/ holds the original's application
(built by test/build_original.sh; its COMMIT file, if any, is printed).
Without it the test fails, saying it was not run.

Checked, on a real original node and a real proxy (bin/kraken) on loopback:
  - the proxy finds that the original refuses push mode and polls it;
  - subscribe through the proxy; entries published on the original reach
    the proxy's subscribers, and entries published on the proxy reach the
    original's, each (entry, topic) once, never back to its publisher;
  - unsubscribe: the last local subscriber of a topic leaving makes the
    proxy unsubscribe upstream, and the link survives it (the original
    knows no `noreply`); entries of that topic stop, the others go on;
  - retro_subscribe on the proxy: from the proxy's retention for a topic it
    held since before the horizon; NOT_FOUND for one it did not (the
    original cannot be asked: documented);
  - the original killed: the proxy's clients holding its topics are
    disconnected (SERVER_ERROR cluster core unavailable) with a log line,
    publishes to its topics are refused; the original restarted on the same
    port: the proxy polls it again and entries flow both ways.
About 15 s."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kraken_server import Server, free_port  # noqa: E402
from kraken_text import KrakenText  # noqa: E402

UNAVAILABLE = b"SERVER_ERROR cluster core unavailable"


class Client(KrakenText):
    """A Kraken protocol client (requests with replies, polling)."""

    def __init__(self, port):
        super().__init__("127.0.0.1", port)

    def retro_subscribe(self, horizon, *topics):
        return self.set(b"retro_subscribe", b"%d\r\n%s" % (horizon, b" ".join(topics)))

    def publish(self, topics, payload):
        return self.set(b"publish", b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(topics),
                                                                   len(payload), payload))

    def poll(self):
        """[(sorted topics, payload)] queued for this client."""
        return [(tuple(sorted(t)), p) for t, p in self.get_messages()]

    def collect(self, n, secs=5.0):
        """Polls until n messages arrived (or secs passed), then once more
        after a quiet moment: everything received."""
        got, deadline = [], time.time() + secs
        while len(got) < n and time.time() < deadline:
            got += self.poll()
            time.sleep(0.05)
        time.sleep(0.5)
        return got + self.poll()

    def closed_within(self, secs):
        """Whether the server closes this connection within secs (after an
        error line, returned as the second value)."""
        self.s.settimeout(0.1)
        deadline, data = time.time() + secs, b""
        while time.time() < deadline:
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return True, data
            if not d:
                return True, data
            data += d
        return False, data


class Original:
    """The original Erlang Kraken on a port, in a process group of its own."""

    def __init__(self, home, port, log_path):
        self.home, self.port, self.log_path = home, port, log_path
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["erl", "-noshell", "-pa", os.path.join(self.home, "ebin"),
             "-kraken", "tcp_server_port", str(self.port),
             "-eval", "ok = kraken:start()"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, "the original exited: see %s" % self.log_path
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the original did not listen on %d" % self.port)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


def pairs(msgs):
    """The (payload, topic) pairs of messages, sorted."""
    return sorted((p, t) for ts, p in msgs for t in ts)


def wait_until(f, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if f():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def log_has(path, pattern):
    with open(path, "rb") as f:
        return re.search(pattern, f.read()) is not None


def log_count(path, pattern):
    with open(path, "rb") as f:
        return len(re.findall(pattern, f.read()))


def next_second():
    """Waits for the next second; returns the one that just ended."""
    now = time.time()
    time.sleep(1 - now % 1 + 0.02)
    return int(now)


def scenario(orig, proxy):
    up = orig.port
    t1, t2, t3 = b"orig_t1", b"orig_t2", b"orig_t3"
    # The proxy tried push mode, was dropped, and polls.
    wait_until(lambda: log_has(proxy.log_path, rb"polling it every 100 ms"), 15,
               "the proxy to poll the original")
    up_line = rb"upstream link to core 127\.0\.0\.1:%d \(\S+\) is up" % up
    wait_until(lambda: log_count(proxy.log_path, up_line) >= 1, 10,
               "the proxy's link to the original")
    a = Client(proxy.port)
    a.subscribe(t1, t2)          # STORED: the original has the link's subscription
    b = Client(up)
    b.subscribe(t1, t2)

    # Both directions, each (entry, topic) once, never back to the publisher.
    assert b.publish([t1], b"from the original") == b"STORED"
    assert a.publish([t1, t2], b"from the proxy") == b"STORED"
    assert b.publish([t2, t1], b"both, from the original") == b"STORED"
    # (The original splits an entry by its router shards: compare pairs.)
    got_a = pairs(a.collect(3))
    assert got_a == sorted([(b"from the original", t1), (b"both, from the original", t1),
                            (b"both, from the original", t2)]), got_a
    got_b = pairs(b.collect(2))
    assert got_b == [(b"from the proxy", t1), (b"from the proxy", t2)], got_b
    print("  both directions: ok")

    # Unsubscribe: the proxy's last subscriber of t2 leaves; the link to the
    # original survives the upstream unsubscribe, t1 goes on, t2 stops.
    c = Client(proxy.port)
    c.subscribe(t1)
    a.unsubscribe(t2)
    time.sleep(0.3)
    assert b.publish([t2], b"t2 after the unsubscribe") == b"STORED"
    assert b.publish([t1], b"t1 after the unsubscribe") == b"STORED"
    assert a.collect(1) == [((t1,), b"t1 after the unsubscribe")]
    assert c.collect(1) == [((t1,), b"t1 after the unsubscribe")]
    assert not log_has(proxy.log_path, rb"upstream link to core \S+ \(\S+\) lost"), \
        "the link to the original broke"
    print("  unsubscribe: ok")

    # Retro on the proxy: t1 held since before the horizon comes from the
    # proxy's retention; t3, never held, cannot be fetched from a polled
    # upstream: NOT_FOUND (the client reloads).
    h = next_second()
    assert b.publish([t1], b"after the horizon") == b"STORED"
    assert sorted(a.collect(1)) == [((t1,), b"after the horizon")]
    _ = c.collect(1)
    d = Client(proxy.port)
    assert d.retro_subscribe(h, t1) == b"STORED"
    assert d.collect(1) == [((t1,), b"after the horizon")]
    e = Client(proxy.port)
    assert e.retro_subscribe(h, t3) == b"NOT_FOUND"
    print("  retro_subscribe: ok")

    # The original is killed: the holders of its topics on the proxy are
    # disconnected, saying why; publishes to its topics are refused.
    orig.kill()
    t0 = time.time()
    for cl in (a, c, d):
        closed, data = cl.closed_within(3)
        assert closed and (data == b"" or data.startswith(UNAVAILABLE)), (closed, data)
    print("  original killed: holders disconnected after %.1f s" % (time.time() - t0))
    wait_until(lambda: log_has(proxy.log_path, rb"holds topic orig_t1 owned by core "
                               rb"127\.0\.0\.1:%d" % up), 3, "the log line")
    f = Client(proxy.port)
    r = f.publish([t1], b"while down")
    assert r == UNAVAILABLE, r

    # Restarted on the same port: polled again, entries flow both ways.
    orig.start()
    g = Client(proxy.port)
    wait_until(lambda: log_count(proxy.log_path, up_line) >= 2, 10,
               "the proxy to reach the restarted original")
    g.subscribe(t1)
    b2 = Client(up)
    b2.subscribe(t1)
    assert b2.publish([t1], b"from the restarted original") == b"STORED"
    assert g.collect(1) == [((t1,), b"from the restarted original")]
    assert g.publish([t1], b"to the restarted original") == b"STORED"
    assert b2.collect(1) == [((t1,), b"to the restarted original")]
    print("  original restarted: ok")
    for cl in (b, e, f, g, b2):
        cl.close()


def main():
    home = os.environ.get("KRAKEN_ORIGINAL", "")
    if not home or not os.path.isdir(os.path.join(home, "ebin")):
        print("original_upstream_test: NOT RUN: KRAKEN_ORIGINAL is not set to a built "
              "original Kraken (a directory with ebin/; test/build_original.sh makes one)")
        return 2
    commit = "unknown"
    if os.path.exists(os.path.join(home, "COMMIT")):
        with open(os.path.join(home, "COMMIT")) as f:
            commit = f.read().strip()
    print("original_upstream_test: the original Kraken at %s (commit %s)" % (home, commit))
    logs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build")
    os.makedirs(logs, exist_ok=True)
    port = free_port()
    orig_log = os.path.join(logs, "original_%d.log" % port)
    orig = Original(home, port, orig_log)
    proxy = None
    try:
        proxy = Server(("role", "proxy"), ("listen_ip", '"127.0.0.1"'),
                       ("upstreams", '["127.0.0.1:%d"]' % port), ("upstream_poll_ms", "100"))
        scenario(orig, proxy)
    except BaseException:
        print("proxy log: %s, original's log: %s" % (proxy and proxy.log_path, orig_log))
        raise
    finally:
        if proxy:
            proxy.stop()
        orig.kill()
    print("original_upstream_test: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
