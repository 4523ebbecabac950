"""Client programs nobody here wrote, unchanged, against the Redis port:
Debian's python3-redis (redis-py 4.3) and redis-cli (redis-tools).

    REDIS_TARGET=redis  /usr/bin/python3 test/redis_clients_test.py
    REDIS_TARGET=kraken /usr/bin/python3 test/redis_clients_test.py

redis-py 4.3 has no ssubscribe/spublish methods (they came in 4.4/5.0), so
the sharded commands go through PubSub.execute_command / parse_response and
Redis.execute_command, its public generic calls.  It speaks RESP2 only;
redis-cli -3 covers RESP3 push frames.  Every wait is bounded."""
import os
import select
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis_targets as rt  # noqa: E402

import redis  # noqa: E402  (Debian python3-redis)

TARGET = rt.take_target_arg()
PASSWORD = "s3cret"
TIMEOUT = 5.0
REDIS_CLI = os.environ.get("REDIS_CLI", "/usr/bin/redis-cli")


def next_message(p, timeout=TIMEOUT):
    """The next pubsub message (subscribe confirmations included), or fail."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = p.get_message(timeout=max(0.01, deadline - time.time()))
        if m is not None:
            return m
    raise AssertionError("no pubsub message within %.1f s" % timeout)


def wait_numsub(r, channel, n, timeout=TIMEOUT):
    """Waits until PUBSUB NUMSUB channel is n (a subscriber in another
    process or thread has really subscribed)."""
    deadline = time.time() + timeout
    while True:
        got = dict(r.pubsub_numsub(channel)).get(channel.encode(), 0)
        if got == n:
            return
        if time.time() > deadline:
            raise AssertionError("NUMSUB %s stayed %d, wanted %d" % (channel, got, n))
        time.sleep(0.02)


class PyRedis(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start(TARGET)
        cls.port = cls.srv.redis_port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self, **kw):
        r = redis.Redis(host=rt.HOST, port=self.port, socket_timeout=TIMEOUT, **kw)
        self.addCleanup(r.close)
        return r

    def pubsub(self, r, **kw):
        p = r.pubsub(**kw)
        self.addCleanup(p.close)
        return p

    def test_ping_echo(self):
        r = self.client()
        self.assertIs(r.ping(), True)
        self.assertEqual(r.echo("hello"), b"hello")
        self.assertEqual(r.echo(b"\x00\r\n\xff"), b"\x00\r\n\xff")

    def test_decode_responses(self):
        r = self.client(decode_responses=True)
        self.assertEqual(r.echo("héllo"), "héllo")
        p = self.pubsub(r)
        p.subscribe("dec")
        self.assertEqual(next_message(p)["channel"], "dec")
        self.assertEqual(r.publish("dec", "ünïcode"), 1)
        self.assertEqual(next_message(p)["data"], "ünïcode")

    def test_client_id_name(self):
        r = self.client()
        self.assertIsInstance(r.client_id(), int)
        self.assertGreater(r.client_id(), 0)
        self.assertIsNone(r.client_getname())
        self.assertIs(r.client_setname("worker-7"), True)
        self.assertEqual(r.client_getname(), "worker-7")
        r2 = self.client(client_name="named-at-connect")
        self.assertEqual(r2.client_getname(), "named-at-connect")

    def test_subscribe_get_message(self):
        r = self.client()
        p = self.pubsub(r)
        p.subscribe("ch1", "ch2")
        self.assertEqual(next_message(p), {"type": "subscribe", "pattern": None,
                                           "channel": b"ch1", "data": 1})
        self.assertEqual(next_message(p), {"type": "subscribe", "pattern": None,
                                           "channel": b"ch2", "data": 2})
        self.assertEqual(r.publish("ch1", "hello"), 1)
        self.assertEqual(r.publish("ch2", b"bin\x00\r\n"), 1)
        self.assertEqual(next_message(p), {"type": "message", "pattern": None,
                                           "channel": b"ch1", "data": b"hello"})
        self.assertEqual(next_message(p)["data"], b"bin\x00\r\n")
        p.unsubscribe("ch1")
        self.assertEqual(next_message(p), {"type": "unsubscribe", "pattern": None,
                                           "channel": b"ch1", "data": 1})
        self.assertEqual(r.publish("ch1", "gone"), 0)
        p.unsubscribe()
        self.assertEqual(next_message(p)["type"], "unsubscribe")
        self.assertIsNone(p.get_message(timeout=0.2))

    def test_publish_counts(self):
        r = self.client()
        self.assertEqual(r.publish("pc-nobody", "x"), 0)
        p1, p2, p3 = (self.pubsub(self.client()) for _ in range(3))
        p1.subscribe("pc")
        p2.subscribe("pc")
        p3.psubscribe("p?")
        for p in (p1, p2, p3):
            next_message(p)
        self.assertEqual(r.publish("pc", "m"), 3)
        self.assertEqual(r.publish("px", "m"), 1)
        for p in (p1, p2):
            self.assertEqual(next_message(p)["data"], b"m")
        self.assertEqual(next_message(p3), {"type": "pmessage", "pattern": b"p?",
                                            "channel": b"pc", "data": b"m"})
        self.assertEqual(next_message(p3)["channel"], b"px")

    def test_psubscribe(self):
        r = self.client()
        p = self.pubsub(r, ignore_subscribe_messages=True)
        p.psubscribe("news.*", "h[ae]llo")
        time.sleep(0.05)
        self.assertIsNone(p.get_message(timeout=0.1))   # the two confirmations, ignored
        self.assertIsNone(p.get_message(timeout=0.1))
        self.assertEqual(r.publish("news.tech", "n1"), 1)
        self.assertEqual(r.publish("hallo", "n2"), 1)
        self.assertEqual(r.publish("hillo", "n3"), 0)
        m1, m2 = next_message(p), next_message(p)
        self.assertEqual((m1["type"], m1["pattern"], m1["channel"], m1["data"]),
                         ("pmessage", b"news.*", b"news.tech", b"n1"))
        self.assertEqual((m2["pattern"], m2["channel"], m2["data"]), (b"h[ae]llo", b"hallo", b"n2"))
        p.punsubscribe("news.*")
        time.sleep(0.05)
        self.assertEqual(r.publish("news.tech", "n4"), 0)

    def test_ssubscribe(self):
        r = self.client()
        p = self.pubsub(r)
        p.execute_command("SSUBSCRIBE", "sh1")
        self.assertEqual(p.parse_response(timeout=TIMEOUT), [b"ssubscribe", b"sh1", 1])
        self.assertEqual(r.execute_command("SPUBLISH", "sh1", "shard msg"), 1)
        self.assertEqual(r.publish("sh1", "plain"), 0)   # another namespace
        resp = p.parse_response(timeout=TIMEOUT)
        self.assertEqual(resp, [b"smessage", b"sh1", b"shard msg"])
        self.assertEqual(p.handle_message(resp),
                         {"type": "smessage", "pattern": None, "channel": b"sh1",
                          "data": b"shard msg"})
        self.assertEqual(r.execute_command("PUBSUB", "SHARDNUMSUB", "sh1"), [b"sh1", 1])
        p.execute_command("SUNSUBSCRIBE")
        self.assertEqual(p.parse_response(timeout=TIMEOUT), [b"sunsubscribe", b"sh1", 0])

    def test_kraken_retrosubscribe(self):
        """docs/push.md's redis-py recipe for KRAKEN.RETROSUBSCRIBE, and the
        pitfall it works around: get_message() reads nothing, since the
        PubSub object did not subscribe itself."""
        if TARGET != "kraken":
            self.skipTest("a Kraken command")
        r = self.client()
        horizon = int(time.time())
        time.sleep(horizon + 1.02 - time.time())   # published strictly after it
        self.assertEqual(r.publish("retro_py", "before"), 0)
        p = self.pubsub(r)
        p.execute_command("KRAKEN.RETROSUBSCRIBE", horizon, "retro_py", "retro_py2")
        self.assertIsNone(p.get_message(timeout=0.3))
        got = []
        while (resp := p.parse_response(block=False, timeout=1)) is not None:
            got.append(p.handle_message(resp))
        self.assertEqual(got, [
            {"type": "subscribe", "pattern": None, "channel": b"retro_py", "data": 1},
            {"type": "subscribe", "pattern": None, "channel": b"retro_py2", "data": 2},
            {"type": "message", "pattern": None, "channel": b"retro_py", "data": b"before"}])
        self.assertEqual(r.publish("retro_py2", "live"), 1)
        self.assertEqual(p.handle_message(p.parse_response(timeout=TIMEOUT)),
                         {"type": "message", "pattern": None, "channel": b"retro_py2",
                          "data": b"live"})
        # -NOTFOUND (a horizon before the server's start) is raised.
        p2 = self.pubsub(r)
        p2.execute_command("KRAKEN.RETROSUBSCRIBE", 1, "retro_py3")
        with self.assertRaisesRegex(redis.exceptions.ResponseError, "^NOTFOUND "):
            while p2.parse_response(block=False, timeout=1) is not None:
                pass

    def test_ping_subscribed(self):
        r = self.client()
        p = self.pubsub(r)
        p.subscribe("pingch")
        next_message(p)
        p.ping()
        self.assertEqual(next_message(p), {"type": "pong", "pattern": None, "channel": None,
                                           "data": b""})
        p.ping("hi")
        self.assertEqual(next_message(p)["data"], b"hi")

    def test_listen(self):
        r = self.client()
        p = self.pubsub(r)
        p.subscribe("lst")
        next_message(p)

        def publish():
            pr = redis.Redis(host=rt.HOST, port=self.port, socket_timeout=TIMEOUT)
            for i in range(3):
                pr.publish("lst", "m%d" % i)
            pr.publish("lst", "stop")
            pr.close()
        t = threading.Thread(target=publish)
        t.start()
        got = []
        for m in p.listen():
            if m["type"] == "message":
                if m["data"] == b"stop":
                    break
                got.append(m["data"])
        t.join(TIMEOUT)
        self.assertEqual(got, [b"m0", b"m1", b"m2"])

    def test_run_in_thread(self):
        r = self.client()
        p = self.pubsub(r)
        got = []
        done = threading.Event()

        def handler(m):
            got.append((m["type"], m["channel"], m["data"]))
            if len(got) == 3:
                done.set()
        p.subscribe(**{"rit": handler})
        p.psubscribe(**{"ri*": handler})
        worker = p.run_in_thread(sleep_time=0.01, daemon=True)
        self.addCleanup(worker.stop)
        wait_numsub(r, "rit", 1)
        deadline = time.time() + TIMEOUT
        while r.execute_command("PUBSUB", "NUMPAT") < 1 and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(r.publish("rit", "one"), 2)
        self.assertEqual(r.publish("rix", "two"), 1)
        self.assertTrue(done.wait(TIMEOUT), got)
        worker.stop()
        worker.join(TIMEOUT)
        self.assertEqual(sorted(got), sorted([("message", b"rit", b"one"),
                                              ("pmessage", b"rit", b"one"),
                                              ("pmessage", b"rix", b"two")]))

    def test_many_messages_in_order(self):
        r = self.client()
        p = self.pubsub(r, ignore_subscribe_messages=True)
        p.subscribe("bulk")
        wait_numsub(r, "bulk", 1)
        pipe = r.pipeline(transaction=False)
        for i in range(2000):
            pipe.publish("bulk", "msg-%d" % i)
        self.assertEqual(pipe.execute(), [1] * 2000)
        got = []
        deadline = time.time() + 10
        while len(got) < 2000 and time.time() < deadline:
            m = p.get_message(timeout=1)
            if m is not None:
                got.append(m["data"])
        self.assertEqual(got, [b"msg-%d" % i for i in range(2000)])

    def test_introspection(self):
        r = self.client()
        p = self.pubsub(r)
        p.subscribe("intro-a", "intro-b")
        p.psubscribe("intro-*")
        for _ in range(3):
            next_message(p)
        self.assertEqual(sorted(r.pubsub_channels("intro-*")), [b"intro-a", b"intro-b"])
        self.assertEqual(r.pubsub_numsub("intro-a", "intro-z"), [(b"intro-a", 1), (b"intro-z", 0)])
        self.assertGreaterEqual(r.pubsub_numpat(), 1)
        self.assertEqual(r.execute_command("PUBSUB", "SHARDCHANNELS", "intro-*"), [])

    def test_info_pubsub_counts(self):
        """INFO's pubsub_channels and pubsub_patterns count what PUBSUB
        CHANNELS and NUMPAT do: channels with a subscriber (not a channel
        only published to, which Kraken retains), and distinct patterns
        (two clients of one pattern count once)."""
        r = self.client()
        self.assertEqual(r.publish("info-nobody-%d" % os.getpid(), "x"), 0)
        p1, p2 = self.pubsub(r), self.pubsub(r)
        p1.subscribe("info-a")
        p1.psubscribe("info-*")
        p2.psubscribe("info-*")
        for p in (p1, p1, p2):
            next_message(p)
        # Other tests' closed connections may still be leaving: wait until
        # INFO and PUBSUB agree, or fail with both.
        deadline = time.time() + TIMEOUT
        while True:
            info = r.info("stats")
            want = (len(r.pubsub_channels()), r.pubsub_numpat())
            got = (info["pubsub_channels"], info["pubsub_patterns"])
            if got == want or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(got, want)
        self.assertGreaterEqual(want, (1, 1))

    def test_reconnect_resubscribes(self):
        r = self.client()
        p = self.pubsub(r)
        p.subscribe("rc")
        next_message(p)
        p.connection.disconnect()          # redis-py reconnects and subscribes again
        p.subscribe("rc2")
        types = [next_message(p)["type"] for _ in range(2)]
        self.assertEqual(types, ["subscribe", "subscribe"])
        wait_numsub(r, "rc", 1)
        self.assertEqual(r.publish("rc", "back"), 1)
        self.assertEqual(next_message(p)["data"], b"back")


class PyRedisAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start(TARGET, password=PASSWORD)
        cls.port = cls.srv.redis_port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self, **kw):
        r = redis.Redis(host=rt.HOST, port=self.port, socket_timeout=TIMEOUT, **kw)
        self.addCleanup(r.close)
        return r

    def test_password(self):
        self.assertIs(self.client(password=PASSWORD).ping(), True)

    def test_username_password(self):
        self.assertIs(self.client(username="default", password=PASSWORD).ping(), True)

    def test_no_password(self):
        with self.assertRaises(redis.exceptions.AuthenticationError) as cm:
            self.client().ping()
        self.assertIn("Authentication required", str(cm.exception))

    def test_wrong_password(self):
        with self.assertRaises((redis.exceptions.ResponseError,
                                redis.exceptions.AuthenticationError)) as cm:
            self.client(password="wrong").ping()
        self.assertIn("WRONGPASS", str(cm.exception))

    def test_pubsub_with_password(self):
        r = self.client(password=PASSWORD)
        p = r.pubsub()
        self.addCleanup(p.close)
        p.subscribe("secret-ch")
        self.assertEqual(next_message(p)["type"], "subscribe")
        self.assertEqual(r.publish("secret-ch", "classified"), 1)
        self.assertEqual(next_message(p)["data"], b"classified")


class Reader:
    """Lines of a subprocess's stdout, read with a deadline."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""

    def lines(self, n, timeout=TIMEOUT):
        deadline = time.time() + timeout
        fd = self.proc.stdout.fileno()
        while self.buf.count(b"\n") < n:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("wanted %d lines, have %r" % (n, self.buf))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                d = os.read(fd, 65536)
                if not d:
                    raise AssertionError("redis-cli exited (%s); output %r"
                                         % (self.proc.poll(), self.buf))
                self.buf += d
        out = self.buf.split(b"\n")
        self.buf = b"\n".join(out[n:])
        return [x.decode() for x in out[:n]]


class RedisCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start(TARGET)
        cls.port = cls.srv.redis_port
        cls.auth_srv = None

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        if cls.auth_srv:
            cls.auth_srv.stop()

    def cli(self, *args, port=None):
        return subprocess.run([REDIS_CLI, "-p", str(port or self.port)] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT * 2)

    def spawn(self, *args):
        proc = subprocess.Popen([REDIS_CLI, "-p", str(self.port)] + list(args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

        def stop():
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.addCleanup(stop)
        return Reader(proc)

    def test_ping(self):
        r = self.cli("ping")
        self.assertEqual((r.returncode, r.stdout), (0, b"PONG\n"))
        self.assertEqual(self.cli("ping", "hi there").stdout, b"hi there\n")

    def test_publish_integer(self):
        r = self.cli("--no-raw", "publish", "cli-nobody", "msg")
        self.assertEqual((r.returncode, r.stdout), (0, b"(integer) 0\n"))
        self.assertEqual(self.cli("publish", "cli-nobody", "msg").stdout, b"0\n")

    def check_subscriber(self, *flags):
        out = self.spawn(*flags, "subscribe", "clich")
        self.assertEqual(out.lines(3), ["subscribe", "clich", "1"])
        r = self.cli("--no-raw", "publish", "clich", "hello world")
        self.assertEqual(r.stdout, b"(integer) 1\n")
        pr = redis.Redis(host=rt.HOST, port=self.port, socket_timeout=TIMEOUT)
        self.addCleanup(pr.close)
        self.assertEqual(pr.publish("clich", "second"), 1)
        self.assertEqual(out.lines(6), ["message", "clich", "hello world",
                                        "message", "clich", "second"])

    def test_subscribe_prints_messages(self):
        self.check_subscriber()

    def test_subscribe_resp3(self):
        self.check_subscriber("-3")

    def test_psubscribe_prints_messages(self):
        out = self.spawn("psubscribe", "cli*")
        self.assertEqual(out.lines(3), ["psubscribe", "cli*", "1"])
        self.assertEqual(self.cli("--no-raw", "publish", "cliX", "pm").stdout, b"(integer) 1\n")
        self.assertEqual(out.lines(4), ["pmessage", "cli*", "cliX", "pm"])

    def test_password(self):
        if RedisCli.auth_srv is None:
            RedisCli.auth_srv = rt.start(TARGET, password=PASSWORD)
        port = RedisCli.auth_srv.redis_port
        r = self.cli("-a", PASSWORD, "--no-auth-warning", "ping", port=port)
        self.assertEqual(r.stdout, b"PONG\n")
        r = self.cli("ping", port=port)
        self.assertEqual(r.stdout.strip(), b"NOAUTH Authentication required.")
        r = self.cli("--user", "default", "--pass", PASSWORD, "--no-auth-warning",
                     "--no-raw", "publish", "x", "y", port=port)
        self.assertEqual(r.stdout, b"(integer) 0\n")


if __name__ == "__main__":
    print("redis_clients_test: target %s, redis-py %s" % (TARGET, redis.__version__), flush=True)
    unittest.main(verbosity=2)
