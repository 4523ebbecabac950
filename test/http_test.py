"""The engine's HTTP endpoint (http_port; c_src/http.c) against a real node
started by bin/kraken (kraken_server.py): /metrics checked by promtool and
after traffic, /healthz and /readyz (also with the engine stopped by
SIGSTOP, and at the descriptor limit), /connz and /topics paging, errors.

    /usr/bin/python3 test/http_test.py
    KRAKEN_ENGINE=$PWD/priv/kraken_engine_asan /usr/bin/python3 test/http_test.py

Standard library only; promtool comes from Debian's `prometheus` package."""
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kraken_server import ROOT, Server  # noqa: E402

HOST = "127.0.0.1"
TIMEOUT = 10.0
if "asan" in os.environ.get("KRAKEN_ENGINE", ""):
    os.environ.setdefault("ASAN_OPTIONS", "quarantine_size_mb=16")


class Conn:
    """A Kraken protocol client, just enough for traffic."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        d = self.s.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        l, self.buf = self.buf[:i], self.buf[i:]
        return l

    def set(self, cmd, data):
        self.s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (cmd, len(data), data))
        self.assert_line(b"STORED\r\n")

    def assert_line(self, want):
        got = self.line()
        if got != want:
            raise AssertionError("expected %r, got %r" % (want, got))

    def publish(self, topics, payload):
        e = b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(topics), len(payload), payload)
        self.set(b"publish", e)

    def poll(self):
        self.s.sendall(b"get messages\r\n")
        first = self.line()
        if first == b"END\r\n":
            return b""
        n = int(first.split()[3])
        while len(self.buf) < n + 2 + 5:
            self._fill()
        block, self.buf = self.buf[:n], self.buf[n + 2 + 5:]
        return block

    def stats(self):
        self.s.sendall(b"stats\r\n")
        out = {}
        while True:
            l = self.line()
            if l == b"END\r\n":
                return out
            _, k, v = l.decode().split(None, 2)
            out[k] = v.strip()


def get(port, path, timeout=TIMEOUT, method="GET"):
    """(status, content type, body) of one request on a new connection."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        c.close()


def parse_metrics(text):
    """{'name{labels}': float} of the samples of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class HttpCase(unittest.TestCase):
    OPTS = ()
    PREEXEC = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(("http_port", "0"), ("listen_ip", '"127.0.0.1"'), *cls.OPTS,
                            preexec_fn=cls.PREEXEC)
        cls.port = cls.server.port
        c = Conn(cls.port)
        cls.http_port = int(c.stats()["http_port"])
        c.close()
        cls.engine = cls.server.engine_pid()

    @classmethod
    def tearDownClass(cls):
        try:
            os.kill(cls.engine, signal.SIGCONT)
        except ProcessLookupError:
            pass
        cls.server.stop()

    def metrics(self):
        status, ctype, body = get(self.http_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        return body.decode()


class MetricsTest(HttpCase):
    def test_promtool_accepts_a_live_scrape(self):
        # some traffic first, so that every family has samples worth checking
        sub, pub = Conn(self.port), Conn(self.port)
        self.addCleanup(sub.close)
        self.addCleanup(pub.close)
        sub.set(b"subscribe", b"t1")
        pub.publish([b"t1"], b"hello")
        sub.poll()
        text = self.metrics()
        p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # HELP and TYPE for every family, every name prefixed and typed
        families = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
        helps = re.findall(r"^# HELP (\S+) ", text, re.M)
        self.assertEqual([f for f, _ in families], helps)
        for name, kind in families:
            self.assertTrue(name.startswith("kraken_"), name)
            if kind == "counter":
                self.assertTrue(name.endswith("_total"), name)
        names = {f for f, _ in families}
        for want in ["kraken_connections", "kraken_connections_accepted_total",
                     "kraken_connections_refused_total", "kraken_topics",
                     "kraken_subscriptions", "kraken_pattern_subscriptions",
                     "kraken_entries_published_total", "kraken_published_bytes_total",
                     "kraken_deliveries_total", "kraken_polls_total", "kraken_queued_entries",
                     "kraken_queued_bytes", "kraken_largest_queue_bytes",
                     "kraken_disconnects_total", "kraken_retained_entries",
                     "kraken_retained_bytes", "kraken_retention_horizon_age_seconds",
                     "kraken_engine_restarts_total", "kraken_queue_wait_seconds"]:
            self.assertIn(want, names)
        m = parse_metrics(text)
        for cause in ["idle", "queue_limit", "error", "too_many_clients"]:
            self.assertIn('kraken_disconnects_total{cause="%s"}' % cause, m)
        for proto in ["kraken", "redis"]:
            self.assertIn('kraken_connections{protocol="%s"}' % proto, m)
        self.assertIn('kraken_retained_entries{shard="3"}', m)
        self.assertEqual(m["kraken_engine_restarts_total"], 0)
        self.assertIn("resets when the engine restarts", text)

    def test_counters_move_with_traffic(self):
        sub, pub = Conn(self.port), Conn(self.port)
        self.addCleanup(sub.close)
        self.addCleanup(pub.close)
        sub.set(b"subscribe", b"move1 move2")
        before = parse_metrics(self.metrics())
        for i in range(5):
            pub.publish([b"move1"], b"x" * 100)
        self.assertEqual(parse_metrics(self.metrics())["kraken_largest_queue_bytes"],
                         5 * len(b"MESSAGE move1 100\r\n" + b"x" * 100 + b"\r\n"))
        time.sleep(0.05)  # so that the wait is >= 1 ms for some of them
        self.assertEqual(sub.poll().count(b"MESSAGE move1 100\r\n"), 5)
        after = parse_metrics(self.metrics())

        def d(k):
            return after[k] - before.get(k, 0)
        self.assertEqual(d("kraken_entries_published_total"), 5)
        self.assertEqual(d("kraken_published_bytes_total"), 500)
        self.assertEqual(d("kraken_entries_queued_total"), 5)
        self.assertEqual(d("kraken_deliveries_total"), 5)
        self.assertEqual(d("kraken_polls_total"), 1)
        self.assertEqual(d("kraken_queue_wait_seconds_count"), 5)
        self.assertGreater(d("kraken_queue_wait_seconds_sum"), 0.04)
        self.assertEqual(d('kraken_queue_wait_seconds_bucket{le="+Inf"}'), 5)
        self.assertEqual(d('kraken_queue_wait_seconds_bucket{le="0.01"}'), 0)
        self.assertEqual(d('kraken_queue_wait_seconds_bucket{le="1"}'), 5)
        self.assertGreaterEqual(after["kraken_subscriptions"], 2)
        self.assertEqual(d("kraken_connections_accepted_total"), 0)
        self.assertGreaterEqual(after['kraken_connections{protocol="kraken"}'], 2)
        self.assertEqual(after["kraken_queued_entries"], 0)
        self.assertGreaterEqual(sum(v for k, v in after.items()
                                    if k.startswith("kraken_retained_entries{")), 5)
        # a protocol error is a disconnect of cause "error"
        bad = Conn(self.port)
        bad.s.sendall(b"bogus\r\n")
        bad.line()
        bad.close()
        wait_for(lambda: parse_metrics(self.metrics())['kraken_disconnects_total{cause="error"}']
                 == before['kraken_disconnects_total{cause="error"}'] + 1, 5, "error disconnect")

    def test_readiness_canary_leaves_no_trace(self):
        before = parse_metrics(self.metrics())
        for _ in range(20):
            self.assertEqual(get(self.http_port, "/readyz")[2], b"ok\n")
        after = parse_metrics(self.metrics())
        for k in ["kraken_entries_published_total", "kraken_entries_queued_total",
                  "kraken_topics", "kraken_subscriptions", "kraken_queue_wait_seconds_count"]:
            self.assertEqual(after[k], before[k], k)
        _, _, body = get(self.http_port, "/topics")
        self.assertNotIn(b"canary", body)


class HealthTest(HttpCase):
    def test_ok(self):
        self.assertEqual(get(self.http_port, "/healthz"), (200, "text/plain; charset=utf-8",
                                                          b"ok\n"))
        self.assertEqual(get(self.http_port, "/readyz")[0:3:2], (200, b"ok\n"))

    def test_stopped_engine_is_not_ready_within_2_s_and_recovers(self):
        self.assertEqual(get(self.http_port, "/readyz")[0], 200)
        os.kill(self.engine, signal.SIGSTOP)
        try:
            for path in ["/readyz", "/healthz"]:
                t0 = time.time()
                with self.assertRaises(OSError):  # socket.timeout is an OSError
                    get(self.http_port, path, timeout=1.0)
                self.assertLess(time.time() - t0, 2.0)
        finally:
            os.kill(self.engine, signal.SIGCONT)
        # ready again: at once or after one "stalled" answer while the loop catches up
        answers = []

        def ready():
            try:
                st, _, body = get(self.http_port, "/readyz", timeout=1.0)
            except OSError as e:
                answers.append(repr(e))
                return False
            answers.append(body)
            return st == 200 and body == b"ok\n"
        wait_for(ready, 5, "ready after SIGCONT")
        for a in answers[:-1]:
            self.assertTrue(isinstance(a, str) or a.startswith(b"not ready: "), a)
        c = Conn(self.port)
        self.addCleanup(c.close)
        self.assertEqual(c.stats()["curr_connections"], "1")


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


class DescriptorLimitTest(HttpCase):
    PREEXEC = staticmethod(low_nofile)

    def fill_descriptors(self, conns):
        """Connects until the engine stops accepting (every descriptor taken)."""
        for _ in range(200):
            c = socket.create_connection((HOST, self.port), timeout=TIMEOUT)
            conns.append(c)
            c.sendall(b"version\r\n")
            c.settimeout(1.0)
            try:
                c.recv(100)
            except socket.timeout:
                return
        self.fail("accepts never paused")

    def test_not_ready_while_accepts_are_paused(self):
        keep = http.client.HTTPConnection(HOST, self.http_port, timeout=TIMEOUT)
        self.addCleanup(keep.close)
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        conns = []
        self.addCleanup(lambda: [c.close() for c in conns])
        self.fill_descriptors(conns)
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        body = r.read()
        self.assertEqual(r.status, 503, body)
        self.assertTrue(body.startswith(b"not ready: accepting paused"), body)
        for c in conns[-20:]:
            c.close()
        del conns[-20:]

        def ready():
            keep.request("GET", "/readyz")
            r = keep.getresponse()
            return r.read() == b"ok\n"
        wait_for(ready, 5, "ready once descriptors are free")

    def test_new_probe_at_the_descriptor_limit_does_not_kill_the_engine(self):
        # A probe that opens a new connection (curl, blackbox_exporter, a load
        # balancer) while every descriptor is taken: the HTTP listener's
        # accept fails with EMFILE. Its error callback once read the wrong
        # argument (evhttp's bound socket, not the endpoint) and the engine
        # died of SIGSEGV, dropping every client.
        conns = []
        self.addCleanup(lambda: [c.close() for c in conns])
        self.fill_descriptors(conns)
        probes = []
        self.addCleanup(lambda: [p.close() for p in probes])
        for path in ("/healthz", "/readyz"):
            p = socket.create_connection((HOST, self.http_port), timeout=TIMEOUT)
            probes.append(p)
            p.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
        time.sleep(0.7)  # several failed accepts, 200 ms apart
        self.assertEqual(self.server.engine_pid(), self.engine)
        conns[0].sendall(b"version\r\n")
        conns[0].settimeout(TIMEOUT)
        self.assertTrue(conns[0].recv(100).startswith(b"VERSION "))
        # once descriptors are free, the waiting probes are answered
        for c in conns[-20:]:
            c.close()
        del conns[-20:]
        for p in probes:
            p.settimeout(5.0)
            self.assertTrue(p.recv(100).startswith(b"HTTP/1.0 200"))
        self.assertEqual(self.server.engine_pid(), self.engine)
        with open(self.server.log_path, "rb") as f:
            log = f.read()
        self.assertNotIn(b"exited with status", log)
        self.assertIn(b"http accept: Too many open files", log)


class PagingTest(HttpCase):
    NTOPICS = 20000

    def test_topics_pages_cover_every_topic_once(self):
        names = [b"page.%05d" % i for i in range(self.NTOPICS)] + [b'odd"\\\x01\xff']
        subs = [Conn(self.port), Conn(self.port)]
        for c in subs:
            self.addCleanup(c.close)
        subs[0].set(b"subscribe", b" ".join(names))
        subs[1].set(b"subscribe", b" ".join(names[:10]))
        seen, offset, pages, slowest = {}, 0, 0, 0.0
        while True:
            t0 = time.time()
            status, ctype, body = get(self.http_port, "/topics?limit=1000&offset=%d" % offset)
            slowest = max(slowest, time.time() - t0)
            self.assertEqual((status, ctype), (200, "application/json"))
            page = json.loads(body)
            self.assertLessEqual(len(page["items"]), 1000)
            for t in page["items"]:
                self.assertNotIn(t["name"], seen)
                seen[t["name"]] = t
            pages += 1
            if page["next"] is None:
                break
            self.assertGreater(page["next"], offset)
            offset = page["next"]
        self.assertEqual(len(seen), len(names))
        self.assertEqual(seen["page.00003"]["subscribers"], 2)
        self.assertEqual(seen["page.19999"]["subscribers"], 1)
        self.assertIn(seen["page.00003"]["shard"], range(4))
        self.assertEqual(seen['odd"\\\x01\xff']["subscribers"], 1)  # \u00ff: Latin-1
        self.assertGreaterEqual(pages, 20)
        # the largest page, and the default
        # the largest page: 10000 topics unless the 5 ms budget of the loop cut
        # it shorter (a sanitizer build on a slow machine), then "next" says
        # where the following page starts
        page = json.loads(get(self.http_port, "/topics?limit=10000")[2])
        self.assertGreater(len(page["items"]), 0)
        self.assertLessEqual(len(page["items"]), 10000)
        self.assertIsNotNone(page["next"])
        self.assertGreaterEqual(page["next"], len(page["items"]))
        self.assertLessEqual(len(json.loads(get(self.http_port, "/topics")[2])["items"]), 1000)
        print("\n  /topics: %d pages of 1000 over %d topics, slowest %.1f ms (client side)"
              % (pages, len(names), slowest * 1000), file=sys.stderr)

    def test_connz_pages(self):
        conns = [Conn(self.port) for _ in range(25)]
        for c in conns:
            self.addCleanup(c.close)
        conns[0].set(b"subscribe", b"cz1 cz2 cz3")
        conns[0].s.sendall(b"get messages\r\n")
        conns[0].assert_line(b"END\r\n")
        conns[1].set(b"push", b"on")
        conns[2].set(b"subscribe", b"cz1")
        conns[3].publish([b"cz1"], b"12345")
        items, offset = [], 0
        while True:
            page = json.loads(get(self.http_port, "/connz?limit=7&offset=%d" % offset)[2])
            self.assertLessEqual(len(page["items"]), 7)
            items += page["items"]
            if page["next"] is None:
                break
            offset = page["next"]
        self.assertEqual(len(items), page["connections"])
        self.assertGreaterEqual(len(items), 25)
        by_peer = {i["peer"]: i for i in items}
        self.assertEqual(len(by_peer), len(items))
        me = lambda c: by_peer["%s:%d" % c.s.getsockname()]  # noqa: E731
        self.assertEqual(me(conns[0])["subscriptions"], 3)
        self.assertEqual(me(conns[0])["queued_entries"], 1)
        self.assertEqual(me(conns[0])["queued_bytes"], len(b"MESSAGE cz1 5\r\n12345\r\n"))
        self.assertIsNotNone(me(conns[0])["last_poll_seconds"])
        self.assertIsNone(me(conns[5])["last_poll_seconds"])
        self.assertTrue(me(conns[1])["push"])
        self.assertFalse(me(conns[0])["push"])
        self.assertEqual(me(conns[0])["protocol"], "kraken")
        for k in ["id", "connected_seconds", "received", "pattern_subscriptions",
                  "unsent_bytes", "last_request_seconds"]:
            self.assertIn(k, me(conns[0]))


class ErrorTest(HttpCase):
    def test_unknown_paths_are_404(self):
        for path in ["/", "/metricsx", "/metrics/", "/nope", "/topics/x"]:
            status, _, body = get(self.http_port, path)
            self.assertEqual(status, 404, path)
            self.assertTrue(body.startswith(b"not found"), body)

    def test_bad_parameters_are_400(self):
        for q in ["limit=0", "limit=10001", "limit=abc", "limit=", "offset=-1", "offset=1x",
                  "foo=1", "limit=99999999999999999999999"]:
            for path in ["/topics", "/connz"]:
                status, _, body = get(self.http_port, "%s?%s" % (path, q))
                self.assertEqual(status, 400, (path, q, body))
                self.assertTrue(body.startswith(b"bad request: "), body)
        self.assertEqual(get(self.http_port, "/topics?offset=4294967295")[0], 200)

    def test_other_methods_are_refused(self):
        status, _, _ = get(self.http_port, "/metrics", method="POST")
        self.assertIn(status, (405, 501))
        self.assertEqual(get(self.http_port, "/metrics", method="HEAD")[0], 200)


class RestartTest(HttpCase):
    def test_restart_count_comes_from_the_node(self):
        m = parse_metrics(self.metrics())
        self.assertEqual(m["kraken_engine_restarts_total"], 0)
        old = self.engine
        os.kill(old, signal.SIGKILL)
        new = self.server.engine_pid(exclude=(old,))
        type(self).engine = new

        def port():
            try:
                c = Conn(self.port)
            except OSError:
                return None
            try:
                return int(c.stats()["http_port"])
            finally:
                c.close()
        wait_for(lambda: port() is not None, 10, "the restarted engine")
        type(self).http_port = port()  # http_port 0: a new port for each engine
        m = parse_metrics(self.metrics())
        self.assertEqual(m["kraken_engine_restarts_total"], 1)
        self.assertEqual(m["kraken_entries_published_total"], 0)  # counters start again


class StatusTest(HttpCase):
    """bin/kraken status and dump_* against a node whose engine is stopped."""

    def kraken(self, *args, timeout=60):
        env = dict(os.environ, KRAKEN_NODE_NAME="kraken_pytest_%d_%d" % (os.getpid(), self.port))
        t0 = time.time()
        p = subprocess.run([os.path.join(ROOT, "bin", "kraken")] + list(args), env=env,
                           capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode() + p.stderr.decode(), time.time() - t0

    def test_status_sees_a_stopped_engine(self):
        rc, out, _ = self.kraken("status")
        self.assertEqual(rc, 0, out)
        self.assertIn("engine ready: a canary went through the router in", out)
        self.assertIn("http_port %d" % self.http_port, out)
        self.assertIn("redis_port -1", out)  # (not set: off)
        os.kill(self.engine, signal.SIGSTOP)
        try:
            rc, out, took = self.kraken("status")
            self.assertEqual(rc, 4, out)
            self.assertIn("is running but its engine (os pid %d) does not answer "
                          "(no reply within 2 s)" % self.engine, out)
            self.assertLess(took, 15)
            rc, out, took = self.kraken("dump_topics")
            self.assertEqual(rc, 4, out)
            self.assertIn("did not answer dump_topics within 10 s", out)
            self.assertLess(took, 25)
        finally:
            os.kill(self.engine, signal.SIGCONT)
        wait_for(lambda: self.kraken("status")[0] == 0, 20, "status 0 after SIGCONT")
        rc, out, _ = self.kraken("dump_queues")
        self.assertEqual(rc, 0, out)



class RedisPortTest(HttpCase):
    """redis_port 0 takes a free port, which stats and status name."""
    OPTS = (("redis_port", "0"),)

    def test_stats_name_the_port_taken(self):
        c = Conn(self.port)
        self.addCleanup(c.close)
        port = int(c.stats()["redis_port"])
        self.assertGreater(port, 0)
        r = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.addCleanup(r.close)
        r.sendall(b"PING\r\n")
        self.assertEqual(r.recv(64), b"+PONG\r\n")
        env = dict(os.environ, KRAKEN_NODE_NAME="kraken_pytest_%d_%d" % (os.getpid(), self.port))
        p = subprocess.run([os.path.join(ROOT, "bin", "kraken"), "status"], env=env,
                           capture_output=True, timeout=60)
        self.assertIn("redis_port %d" % port, p.stdout.decode())


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len({getattr(t, "test_case", t).id() for t, _ in result.failures + result.errors})
    print("http: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
