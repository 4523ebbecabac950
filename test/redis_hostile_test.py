"""Hostile clients on the Redis port (issue 10, item 5).  Every bad input gets
an error or a disconnect of that connection only, while guard clients
connected before it lose nothing:

  - a RESP guard (subscribed on the Redis port, reading as it goes) and
  - on Kraken, a Kraken-protocol guard (subscribed on the Kraken port,
    polling with `get messages`),

each checked after every test with a message that must arrive exactly once.

    REDIS_TARGET=kraken /usr/bin/python3 test/redis_hostile_test.py   # the point
    REDIS_TARGET=redis  /usr/bin/python3 test/redis_hostile_test.py   # proves the tests

Against redis-server the Kraken-only parts are skipped (the Kraken guard,
the engine's RSS, Kraken's log wording, Kraken's request-size limit) and the
slow-consumer test uses `client-output-buffer-limit pubsub 65536 0 0`, the
Redis counterpart of max_client_queue_bytes 65536.  Every loop is bounded in
iterations and in time."""
import os
import random
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis_targets as rt  # noqa: E402
from redis_targets import cmd as R  # noqa: E402
from kraken_server import engine_pids, rss_kb  # noqa: E402
from redis_cross_test import KConn, kraken_block, bulk  # noqa: E402

TARGET = rt.take_target_arg(sys.argv)
KRAKEN = TARGET == "kraken"
TIMEOUT = 10.0
STORED = b"STORED\r\n"
QUEUE_LIMIT = 65536
MAX_REQUEST = 1 << 20
KRAKEN_OPTS = (("max_client_queue_bytes", str(QUEUE_LIMIT)),
               ("max_request_bytes", str(MAX_REQUEST)),
               ("messages_stored_per_router_shard", "10"))
REDIS_ARGS = ("--client-output-buffer-limit", "pubsub %d 0 0" % QUEUE_LIMIT)


def read_until_close(c, timeout=TIMEOUT, limit=64 << 20):
    """Everything c receives until the server closes it (a reset counts as a
    close); fails after timeout."""
    deadline = time.time() + timeout
    while not c.closed:
        if time.time() > deadline:
            raise AssertionError("connection not closed within %.0f s (got %r)"
                                 % (timeout, c.buf[:200]))
        try:
            c._recv(deadline - time.time())
        except OSError:
            c.closed = True
        if len(c.buf) > limit:
            raise AssertionError("more than %d bytes before close" % limit)
    out, c.buf = c.buf, b""
    return out


def send_ignoring_close(c, data):
    try:
        c.send(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


class Guard:
    """A RESP subscriber and (on Kraken) a Kraken-protocol subscriber of
    channel guard-<name>, and a RESP publisher."""

    def __init__(self, srv, name):
        self.ch = b"guard-" + name.encode()
        self.n = 0
        self.rsub = rt.Conn(srv.redis_port, TIMEOUT)
        self.rsub.send(R("SUBSCRIBE", self.ch))
        assert self.rsub.read_frame() == (b"*", [(b"$", b"subscribe"), (b"$", self.ch),
                                                 (b":", b"1")])
        self.rpub = rt.Conn(srv.redis_port, TIMEOUT)
        self.ksub = None
        if KRAKEN:
            self.ksub = KConn(srv.kraken_port, TIMEOUT)
            assert self.ksub.subscribe(self.ch) == STORED

    def check(self):
        self.n += 1
        payload = b"guard %s #%d" % (self.ch, self.n)
        want = 2 if self.ksub else 1
        assert self.rpub.call("PUBLISH", self.ch, payload) == (b":", b"%d" % want)
        got = self.rsub.read_frame()
        assert got == bulk(b"message", self.ch, payload), "RESP guard got %r" % (got,)
        if self.ksub:
            raw = self.ksub.get_raw()
            assert raw == kraken_block([((self.ch,), payload)]), "Kraken guard got %r" % raw

    def close(self):
        for c in (self.rsub, self.rpub, self.ksub):
            if c:
                c.close()


class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start(TARGET, kraken_opts=KRAKEN_OPTS, redis_args=REDIS_ARGS)
        cls.engine = cls.srv.engine_pid() if KRAKEN else None
        cls.long_guard = Guard(cls.srv, "long")

    @classmethod
    def tearDownClass(cls):
        cls.long_guard.close()
        cls.srv.stop()

    def setUp(self):
        self.guard = Guard(self.srv, self.id().rsplit(".", 1)[-1])
        self.addCleanup(self.guard.close)

    def tearDown(self):
        self.guard.check()
        self.long_guard.check()
        if KRAKEN:
            self.assertEqual(engine_pids(self.srv.proc.pid), [self.engine],
                             "the engine was restarted")
            log = self.srv.log_text()
            for bad in ("AddressSanitizer", "runtime error:", "exited with status"):
                self.assertNotIn(bad, log)

    def conn(self, rcvbuf=None):
        if rcvbuf:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(TIMEOUT)
            s.connect((rt.HOST, self.srv.redis_port))
            c = rt.Conn.__new__(rt.Conn)
            c.sock, c.buf, c.closed = s, b"", False
        else:
            c = rt.Conn(self.srv.redis_port, TIMEOUT)
        self.addCleanup(c.close)
        return c

    def assert_error_and_close(self, data, reply_prefix):
        c = self.conn()
        send_ignoring_close(c, data)
        got = read_until_close(c)
        self.assertTrue(got.startswith(reply_prefix) and got.endswith(b"\r\n")
                        and got.count(b"\r\n") == 1, "input %r: got %r" % (data[:60], got[:200]))
        self.guard.check()

    # -- bad lengths and counts

    def test_bulk_length_2_31(self):
        for data in (b"*1\r\n$2147483648\r\n", b"*2\r\n$4\r\nECHO\r\n$2147483648\r\nxx",
                     b"*1\r\n$9223372036854775808\r\n", b"*1\r\n$99999999999999999999999\r\n"):
            with self.subTest(data=data):
                self.assert_error_and_close(data, b"-ERR Protocol error: invalid bulk length")

    def test_negative_bulk_length(self):
        for data in (b"*1\r\n$-5\r\n", b"*2\r\n$4\r\nECHO\r\n$-2\r\n", b"*1\r\n$-2147483649\r\n"):
            with self.subTest(data=data):
                self.assert_error_and_close(data, b"-ERR Protocol error: invalid bulk length")

    def test_bad_counts(self):
        for data in (b"*2147483648\r\n", b"*abc\r\n", b"*99999999999999999999\r\n"):
            with self.subTest(data=data):
                self.assert_error_and_close(data, b"-ERR Protocol error: invalid multibulk length")

    def test_array_count_10_9_then_close(self):
        c = self.conn()
        c.send(b"*1000000000\r\n")
        self.assertTrue(c.quiet(0.2), c.buf)       # redis-server waits for the arguments
        c.close()
        self.guard.check()

    def test_array_count_10_9_streamed(self):
        """A billion-argument array whose arguments keep coming: on Kraken it
        must be cut off (error and/or close) once it passes max_request_bytes;
        redis-server (1 GB query buffer limit) is only required to survive."""
        c = self.conn()
        c.send(b"*1000000000\r\n")
        arg = b"$1\r\nx\r\n"
        chunk = arg * 8192                          # 56 KiB
        rss0 = rss_kb(self.engine) if KRAKEN else 0
        sent = 0
        for _ in range(4 * MAX_REQUEST // len(chunk)):
            try:
                if not send_ignoring_close(c, chunk):
                    break
            except socket.timeout:
                self.fail("after %d bytes the server stopped reading without closing" % sent)
            sent += len(chunk)
            if c.closed:
                break
        if KRAKEN:
            got = read_until_close(c)
            self.assertTrue(got == b"" or (got.startswith(b"-ERR") and got.count(b"\r\n") == 1),
                            got[:200])
            self.assertLess(rss_kb(self.engine) - rss0, 32 * 1024)
        else:
            self.assertFalse(c.closed)
            self.assertEqual(c.buf, b"")
        c.close()
        self.guard.check()

    # -- inline lines

    def test_megabyte_inline_line_without_newline(self):
        c = self.conn()
        data = b"SUBSCRIBE " + b"x" * (1 << 20)
        for i in range(0, len(data), 65536):
            if not send_ignoring_close(c, data[i:i + 65536]):
                break
        got = read_until_close(c)
        self.assertEqual(got, b"-ERR Protocol error: too big inline request\r\n")
        self.guard.check()

    def test_megabyte_of_spaces(self):
        c = self.conn()
        for _ in range(16):
            if not send_ignoring_close(c, b" " * 65536):
                break
        self.assertEqual(read_until_close(c), b"-ERR Protocol error: too big inline request\r\n")

    def test_many_empty_lines_then_ping(self):
        c = self.conn()
        c.send(b"\r\n" * 100000 + b"PING\r\n")
        self.assertEqual(c.read_frame(), (b"+", b"PONG"))

    def test_unbalanced_quotes(self):
        self.assert_error_and_close(b'PUBLISH "guard-x hello\r\n',
                                    b"-ERR Protocol error: unbalanced quotes in request")

    # -- abrupt and random clients

    def test_disconnects_mid_command(self):
        sub = self.conn()
        sub.send(R("SUBSCRIBE", "mid"))
        sub.read_frame()
        whole = R("PUBLISH", "mid", "x" * 100)
        for cut in (1, 5, 14, 20, 30, len(whole) - 3, len(whole) - 1):
            c = self.conn()
            c.send(whole[:cut])
            c.close()
        self.assertTrue(sub.quiet(0.3), sub.buf)
        self.guard.check()

    def test_random_bytes(self):
        rnd = random.Random(10)
        for i in range(30):
            c = self.conn()
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 3000)))
            junk = rnd.choice([b"", b"*", b"*3\r\n$", b"\"", b"SUBSCRIBE "]) + junk
            send_ignoring_close(c, junk)
            c.close()
            if i % 10 == 0:
                self.guard.check()

    def test_subscribe_1500_channels_in_one_command(self):
        """About 45 KB of confirmations: under the 64 KB limit that Redis's
        client-output-buffer-limit pubsub applies to them too."""
        c = self.conn()
        names = [b"many-%d" % i for i in range(1500)]
        c.send(R("SUBSCRIBE", *names))
        frames = c.read_frames(1500, timeout=30)
        self.assertEqual(frames[-1], (b"*", [(b"$", b"subscribe"), (b"$", names[-1]),
                                             (b":", b"1500")]))
        c.close()
        self.guard.check()

    # -- slow consumers

    def test_subscriber_that_never_reads(self):
        """Subscribers (channel, pattern, RESP3) that never read while two
        publishers flood them: each is disconnected once its pending output
        passes the limit, with a log warning naming it; the guards, which
        read as they go, get every message in order."""
        victims = []
        for i, how in enumerate([("SUBSCRIBE", "flood"), ("PSUBSCRIBE", "flo*"), ("RESP3", "flood")]):
            v = self.conn(rcvbuf=4096)
            if how[0] == "RESP3":
                v.send(R("HELLO", "3"))
                v.read_frame()
                v.send(R("SUBSCRIBE", how[1]))
            else:
                v.send(R(*how))
            v.read_frame()
            victims.append(v)
        rguard = self.conn()
        rguard.send(R("SUBSCRIBE", "flood"))
        rguard.read_frame()
        kguard = None
        if KRAKEN:
            kguard = KConn(self.srv.kraken_port, TIMEOUT)
            self.addCleanup(kguard.close)
            self.assertEqual(kguard.subscribe(b"flood"), STORED)
        rpub = self.conn()
        kpub = None
        if KRAKEN:
            kpub = KConn(self.srv.kraken_port, TIMEOUT)
            self.addCleanup(kpub.close)
        rss0 = rss_kb(self.engine) if KRAKEN else 0
        size = 16 * 1024
        # At least 700 messages (about 11 MB: past the kernel's socket
        # buffers, which autotune up to tcp_wmem's 4 MB each on a busy
        # machine), and on until PUBLISH counts only the guards, that is
        # until every victim was disconnected; at most 64 MB.
        n, n_max = 700, 4096
        guards = 2 if KRAKEN else 1
        counts = set()
        t0 = time.time()
        i = 0
        while i < n or min(counts) > guards:
            self.assertLess(i, n_max, "victims still subscribed after %d messages of %d bytes: %r"
                            % (i, size, counts))
            payload = (b"%06d" % i) * (size // 6)
            if kpub and i % 2:
                self.assertEqual(kpub.publish([b"flood"], payload), STORED)
            else:
                r = rpub.call("PUBLISH", "flood", payload)
                self.assertEqual(r[0], b":")
                counts.add(int(r[1]))
            self.assertEqual(rguard.read_frame(), bulk(b"message", b"flood", payload))
            if kguard:
                self.assertEqual(kguard.get_raw(), kraken_block([((b"flood",), payload)]))
            if i % 100 == 0:
                self.guard.check()
            self.assertLess(time.time() - t0, 120, "flood too slow")
            i += 1
        self.assertTrue(counts <= set(range(guards, guards + len(victims) + 1)), counts)
        for v in victims:
            read_until_close(v, timeout=TIMEOUT, limit=64 << 20)
        # nobody but the guards is left on the channel
        self.assertEqual(rpub.call("PUBLISH", "flood", "last"), (b":", b"%d" % guards))
        self.assertEqual(rguard.read_frame(), bulk(b"message", b"flood", b"last"))
        if kguard:
            self.assertEqual(kguard.get_raw(), kraken_block([((b"flood",), b"last")]))
        log = self.srv.log_text()
        for v in victims:
            peer = "%s:%d" % v.sock.getsockname()
            self.assertIn(peer, log, "no log line names the slow subscriber %s" % peer)
        if KRAKEN:
            self.assertIn("max_client_queue_bytes", log)
            self.assertLess(rss_kb(self.engine) - rss0, 16 * 1024,
                            "the engine kept the victims' output")
        else:
            self.assertIn("overcoming of output buffer limits", log)

    def test_pipelining_client_that_never_reads(self):
        """Requests whose replies are never read: the server stops reading
        (Kraken: backpressure) or buffers; either way the others go on."""
        c = self.conn(rcvbuf=4096)
        c.sock.setblocking(False)
        payload = R("ECHO", "e" * 8192)
        sent = 0
        deadline = time.time() + 5
        while sent < 64 << 20 and time.time() < deadline:
            try:
                sent += c.sock.send(payload)
            except BlockingIOError:
                break
            except (BrokenPipeError, ConnectionResetError):
                break
        self.guard.check()
        c.sock.close()
        self.guard.check()


class IdleAndMaxClients(unittest.TestCase):
    """docs/push.md: client_idle_timeout_secs does not apply to Redis
    connections (redis-server's default `timeout 0`), and max_tcp_clients
    counts them, refusing one more with redis-server's error."""

    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start(TARGET, kraken_opts=(("client_idle_timeout_secs", "1"),
                                                ("max_tcp_clients", "3")),
                           redis_args=("--maxclients", "3"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_idle_redis_connections_stay_and_the_limit_counts_them(self):
        # The start-up's port probes may not be closed on the server's side
        # yet: wait until this one is the only client.
        deadline = time.time() + TIMEOUT
        while True:
            probe = rt.Conn(self.srv.redis_port, TIMEOUT)
            probe.send(R("INFO", "clients"))
            info = probe.read_frame()[1]
            probe.close()
            if b"connected_clients:1\r\n" in info or time.time() > deadline:
                break
            time.sleep(0.05)
        time.sleep(0.1)  # the probe's own close
        plain = rt.Conn(self.srv.redis_port, TIMEOUT)
        sub = rt.Conn(self.srv.redis_port, TIMEOUT)
        self.addCleanup(plain.close)
        self.addCleanup(sub.close)
        sub.send(R("SUBSCRIBE", b"idle"))
        self.assertEqual(sub.read_frame(),
                         (b"*", [(b"$", b"subscribe"), (b"$", b"idle"), (b":", b"1")]))
        time.sleep(2.5)  # over 1 s idle, and the sweep's 200 ms
        self.assertEqual(plain.call("PING"), (b"+", b"PONG"))
        sub.send(R("PING"))
        self.assertEqual(sub.read_frame(), (b"*", [(b"$", b"pong"), (b"$", b"")]))
        if KRAKEN:  # a Kraken client is closed meanwhile, which frees its slot
            k = KConn(self.srv.kraken_port, TIMEOUT)
            self.addCleanup(k.close)
            self.assertEqual(read_until_close(k, timeout=5), b"")
        third = rt.Conn(self.srv.redis_port, TIMEOUT)
        self.addCleanup(third.close)
        self.assertEqual(third.call("PING"), (b"+", b"PONG"))
        over = rt.Conn(self.srv.redis_port, TIMEOUT)
        self.addCleanup(over.close)
        self.assertEqual(read_until_close(over), b"-ERR max number of clients reached\r\n")


if __name__ == "__main__":
    print("redis_hostile_test: target %s" % TARGET, flush=True)
    unittest.main(verbosity=2)
