"""One topic space for both protocols (issue 10, item 3), Kraken target only:
a Kraken-protocol publish reaches Redis subscribers, a Redis PUBLISH reaches
Kraken subscribers (polled with `get messages`) and is retained for
`register` / `retro_subscribe`, and PUBLISH's integer counts receivers of
both protocols.

    /usr/bin/python3 test/redis_cross_test.py            # starts bin/kraken with redis_port
    /usr/bin/python3 test/redis_cross_test.py Retroactive   # only the provisional commands

The class Retroactive tests the Redis-side commands for retroactive
subscription, which are PROVISIONAL (names and reply shapes may still change
with the engine; adjust them there):
  KRAKEN.REGISTER                       +OK; marks the horizon like Kraken's
                                        `register`: the next SUBSCRIBE of this
                                        connection also delivers what was
                                        published to its channels since.
  KRAKEN.RETROSUBSCRIBE <secs> <ch>...  subscribes like SUBSCRIBE (same reply
                                        frames), then delivers the retained
                                        messages published strictly after
                                        that Unix second as normal `message`
                                        frames, in publish order; if the
                                        horizon is older than what is retained,
                                        after the subscribe frames the error
                                        -NOTFOUND horizon older than retained messages
                                        (the subscription is made all the same).
Only stdlib and python3-redis."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis_targets as rt  # noqa: E402
from redis_targets import cmd as R  # noqa: E402

import redis  # noqa: E402

TIMEOUT = 5.0
STORED = b"STORED\r\n"
END = b"END\r\n"
NOTFOUND = (b"-", b"NOTFOUND horizon older than retained messages")


def bulk(*items):
    return (b"*", [(b"$", x) for x in items])


def push(*items):
    return (b">", [(b"$", x) for x in items])


def sub_frame(kind, name, count, resp3=False):
    return (b">" if resp3 else b"*", [(b"$", kind), (b"$", name), (b":", b"%d" % count)])


class KConn(rt.Conn):
    """A Kraken-protocol client on the Kraken port."""

    def line(self, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while b"\r\n" not in self.buf:
            if self.closed or time.time() > deadline:
                raise AssertionError("no line; have %r" % self.buf[:200])
            self._recv(deadline - time.time())
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while len(self.buf) < n:
            if self.closed or time.time() > deadline:
                raise AssertionError("wanted %d bytes; have %r" % (n, self.buf[:200]))
            self._recv(deadline - time.time())
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def set(self, command, data):
        self.send(b"set %s 0 0 %d\r\n%s\r\n" % (command, len(data), data))
        return self.line()

    def subscribe(self, *topics):
        return self.set(b"subscribe", b" ".join(topics))

    def publish(self, topics, payload):
        return self.set(b"publish", b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(topics), len(payload),
                                                               payload))

    def get_raw(self):
        """The whole raw reply to `get messages`."""
        self.send(b"get messages\r\n")
        first = self.line()
        if first == END:
            return first
        assert first.startswith(b"VALUE messages 0 "), first
        n = int(first.split()[3])
        return first + self.exact(n + 2 + len(END))


def fresh_horizon():
    """The current Unix second, returned once it has passed (so that what is
    published next is strictly after it).  Never before the server's start,
    which would make it too old."""
    h = int(time.time())
    for _ in range(200):
        if int(time.time()) > h:
            break
        time.sleep(0.01)
    return h


def kraken_block(entries):
    """The exact `get messages` reply for [(topics, payload)]."""
    if not entries:
        return END
    block = b"".join(b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(t), len(p), p) for t, p in entries)
    return b"VALUE messages 0 %d\r\n%s%s" % (len(block) - 2, block, END)


class Cross(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start("kraken")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def rconn(self, resp3=False):
        c = rt.Conn(self.srv.redis_port)
        self.addCleanup(c.close)
        if resp3:
            self.assertEqual(c.call("HELLO", "3")[0], b"%")
        return c

    def kconn(self):
        c = KConn(self.srv.kraken_port)
        self.addCleanup(c.close)
        return c

    def rsubscribe(self, c, *channels, kind=b"SUBSCRIBE"):
        c.send(R(kind, *channels))
        return c.read_frames(len(channels))

    def assert_nothing_more(self, *conns):
        for c in conns:
            self.assertTrue(c.quiet(0.15), "unexpected %r" % c.buf[:200])

    # -- Output order: subscribers are written before the publisher's reply

    def assert_already_there(self, c, what):
        """c's socket holds data now, without waiting (on loopback a write
        is in the receiver's socket when the write returns)."""
        c.sock.setblocking(False)
        try:
            got = c.sock.recv(1 << 16)
        except BlockingIOError:
            got = b""
        finally:
            c.sock.settimeout(10.0)
        self.assertTrue(got, "%s: the publisher had its reply before this subscriber's message "
                        "was written" % what)
        c.buf += got

    def test_subscribers_written_before_publishers_reply(self):
        # loop.c writes a turn's output after the turn, the pushed entries
        # before the reply of the publish that queued them (the publisher is
        # listed after its subscribers): a client that waits for its reply
        # never runs ahead of its subscribers.
        s = self.rconn()
        self.assertEqual(self.rsubscribe(s, b"order")[0], sub_frame(b"subscribe", b"order", 1))
        kp, rp = self.kconn(), self.rconn()
        for i in range(50):
            payload = b"m%d" % i
            self.assertEqual(kp.publish([b"order"], payload), STORED)
            self.assert_already_there(s, "after a Kraken publish %d" % i)
            self.assertEqual(rp.call("PUBLISH", "order", payload + b"r"), (b":", b"1"))
            self.assert_already_there(s, "after a Redis PUBLISH %d" % i)
        for i in range(50):
            self.assertEqual(s.read_frame(), bulk(b"message", b"order", b"m%d" % i))
            self.assertEqual(s.read_frame(), bulk(b"message", b"order", b"m%dr" % i))

    # -- Kraken publish -> Redis subscribers

    def test_kraken_entry_two_topics_is_two_messages(self):
        rs = self.rconn()
        self.rsubscribe(rs, "a", "b")
        kp = self.kconn()
        kp.send(b"set publish 0 0 22\r\nMESSAGE a b 5\r\nhello\r\n\r\n")
        self.assertEqual(kp.line(), STORED)
        got = rs.read_frames(2)
        self.assertEqual(got, [bulk(b"message", b"a", b"hello"), bulk(b"message", b"b", b"hello")])
        self.assert_nothing_more(rs)

    def test_kraken_publish_exact_bytes(self):
        """The SPEC example bytes, and the RESP bytes that come out."""
        rs = self.rconn()
        self.rsubscribe(rs, "a", "b")
        kp = self.kconn()
        kp.send(b"set publish 0 0 22\r\nMESSAGE a b 5\r\nhello\r\n\r\n")
        self.assertEqual(kp.line(), STORED)
        rs.read_frames(2, TIMEOUT)
        # the same, byte for byte on a fresh subscriber of one channel
        rs2 = self.rconn()
        self.rsubscribe(rs2, "a")
        kp.send(b"set publish 0 0 22\r\nMESSAGE a b 5\r\nhello\r\n\r\n")
        self.assertEqual(kp.line(), STORED)
        deadline = time.time() + TIMEOUT
        want = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n"
        while len(rs2.buf) < len(want) and time.time() < deadline:
            rs2._recv(deadline - time.time())
        self.assertEqual(rs2.buf, want)

    def test_kraken_entry_to_pattern_subscriber(self):
        rs = self.rconn()
        rs.send(R("PSUBSCRIBE", "a*", "b?", "zz*"))
        rs.read_frames(3)
        kp = self.kconn()
        self.assertEqual(kp.publish([b"a1", b"b2"], b"pm"), STORED)
        got = rs.read_frames(2)
        self.assertEqual(got, [bulk(b"pmessage", b"a*", b"a1", b"pm"),
                               bulk(b"pmessage", b"b?", b"b2", b"pm")])
        self.assert_nothing_more(rs)

    def test_kraken_entry_one_pattern_matching_both_topics(self):
        """Redis semantics: as if each channel had been PUBLISHed, so one
        pattern matching both topics gives one pmessage per channel."""
        rs = self.rconn()
        rs.send(R("PSUBSCRIBE", "t*"))
        rs.read_frames(1)
        kp = self.kconn()
        self.assertEqual(kp.publish([b"t1", b"t2"], b"x"), STORED)
        self.assertEqual(rs.read_frames(2), [bulk(b"pmessage", b"t*", b"t1", b"x"),
                                             bulk(b"pmessage", b"t*", b"t2", b"x")])
        self.assert_nothing_more(rs)

    def test_kraken_entry_channel_and_pattern(self):
        rs = self.rconn()
        self.rsubscribe(rs, "cp")
        rs.send(R("PSUBSCRIBE", "c*"))
        rs.read_frames(1)
        kp = self.kconn()
        self.assertEqual(kp.publish([b"cp"], b"y"), STORED)
        self.assertEqual(rs.read_frames(2), [bulk(b"message", b"cp", b"y"),
                                             bulk(b"pmessage", b"c*", b"cp", b"y")])
        self.assert_nothing_more(rs)

    def test_kraken_publish_to_resp3_subscriber(self):
        rs = self.rconn(resp3=True)
        rs.send(R("SUBSCRIBE", "r3"))
        self.assertEqual(rs.read_frame(), sub_frame(b"subscribe", b"r3", 1, resp3=True))
        kp = self.kconn()
        self.assertEqual(kp.publish([b"r3"], b"pushed"), STORED)
        self.assertEqual(rs.read_frame(), push(b"message", b"r3", b"pushed"))

    def test_kraken_binary_payload(self):
        rs = self.rconn()
        self.rsubscribe(rs, "bin")
        payload = b"\x00\r\nEND\r\nMESSAGE x 1\r\n\xff"
        self.assertEqual(self.kconn().publish([b"bin"], payload), STORED)
        self.assertEqual(rs.read_frame(), bulk(b"message", b"bin", payload))

    def test_kraken_publish_after_redis_unsubscribe(self):
        rs = self.rconn()
        self.rsubscribe(rs, "gone")
        rs.send(R("UNSUBSCRIBE", "gone"))
        rs.read_frame()
        self.assertEqual(self.kconn().publish([b"gone"], b"x"), STORED)
        self.assert_nothing_more(rs)

    # -- Redis PUBLISH -> Kraken subscribers

    def test_redis_publish_reaches_kraken_subscriber(self):
        ks = self.kconn()
        self.assertEqual(ks.subscribe(b"ch"), STORED)
        rp = self.rconn()
        self.assertEqual(rp.call("PUBLISH", "ch", "hello"), (b":", b"1"))
        self.assertEqual(ks.get_raw(), b"VALUE messages 0 19\r\nMESSAGE ch 5\r\nhello\r\nEND\r\n")
        self.assertEqual(ks.get_raw(), END)

    def test_redis_publish_binary_to_kraken(self):
        ks = self.kconn()
        self.assertEqual(ks.subscribe(b"kb"), STORED)
        payload = b"a\r\nb\x00\r\n"
        self.assertEqual(self.rconn().call("PUBLISH", "kb", payload), (b":", b"1"))
        self.assertEqual(ks.get_raw(), kraken_block([((b"kb",), payload)]))

    def test_redis_publishes_in_order_to_kraken(self):
        ks = self.kconn()
        self.assertEqual(ks.subscribe(b"ord"), STORED)
        rp = self.rconn()
        rp.send(b"".join(R("PUBLISH", "ord", "m%d" % i) for i in range(100)))
        self.assertEqual(rp.read_frames(100), [(b":", b"1")] * 100)
        self.assertEqual(ks.get_raw(), kraken_block([((b"ord",), b"m%d" % i) for i in range(100)]))

    def test_publish_counts_both_protocols(self):
        k1, k2 = self.kconn(), self.kconn()
        self.assertEqual(k1.subscribe(b"cnt"), STORED)
        self.assertEqual(k2.subscribe(b"cnt", b"other"), STORED)
        rp = self.rconn()
        self.assertEqual(rp.call("PUBLISH", "cnt", "x"), (b":", b"2"))
        rs = self.rconn()
        self.rsubscribe(rs, "cnt")
        ps = self.rconn()
        ps.send(R("PSUBSCRIBE", "cn*"))
        ps.read_frame()
        self.assertEqual(rp.call("PUBLISH", "cnt", "y"), (b":", b"4"))
        self.assertEqual(rp.call("PUBLISH", "nobody-here", "z"), (b":", b"0"))
        for k in (k1, k2):
            self.assertEqual(k.get_raw(), kraken_block([((b"cnt",), b"x"), ((b"cnt",), b"y")]))

    def test_redis_client_with_redis_py_and_kraken_subscriber(self):
        ks = self.kconn()
        self.assertEqual(ks.subscribe(b"py"), STORED)
        r = redis.Redis(host=rt.HOST, port=self.srv.redis_port, socket_timeout=TIMEOUT)
        self.addCleanup(r.close)
        p = r.pubsub(ignore_subscribe_messages=True)
        self.addCleanup(p.close)
        p.subscribe("py")
        deadline = time.time() + TIMEOUT
        while dict(r.pubsub_numsub("py")).get(b"py", 0) < 1 and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(r.publish("py", "both"), 2)
        self.assertEqual(ks.get_raw(), kraken_block([((b"py",), b"both")]))
        m = None
        while m is None and time.time() < deadline:
            m = p.get_message(timeout=0.5)
        self.assertEqual((m["channel"], m["data"]), (b"py", b"both"))

    def test_kraken_subscriber_also_subscribed_by_redis_publisher(self):
        """A Kraken client never receives its own publishes; a Redis PUBLISH
        from another connection reaches it as usual."""
        ks = self.kconn()
        self.assertEqual(ks.subscribe(b"self"), STORED)
        self.assertEqual(ks.publish([b"self"], b"own"), STORED)
        self.assertEqual(self.rconn().call("PUBLISH", "self", "other"), (b":", b"1"))
        self.assertEqual(ks.get_raw(), kraken_block([((b"self",), b"other")]))

    # -- retention of Redis publishes (Kraken-protocol side)

    def test_redis_publish_retained_for_retro_subscribe(self):
        horizon = fresh_horizon()
        rp = self.rconn()
        self.assertEqual(rp.call("PUBLISH", "ret", "r1"), (b":", b"0"))
        self.assertEqual(rp.call("PUBLISH", "ret", "r2"), (b":", b"0"))
        ks = self.kconn()
        self.assertEqual(ks.set(b"retro_subscribe", b"%d\r\nret" % horizon), STORED)
        self.assertEqual(ks.get_raw(), kraken_block([((b"ret",), b"r1"), ((b"ret",), b"r2")]))

    def test_redis_publish_seen_after_register(self):
        ks = self.kconn()
        self.assertEqual(ks.set(b"register", b""), STORED)
        self.assertEqual(self.rconn().call("PUBLISH", "reg", "after"), (b":", b"0"))
        self.assertEqual(ks.subscribe(b"reg"), STORED)
        self.assertEqual(ks.get_raw(), kraken_block([((b"reg",), b"after")]))

    def test_retro_subscribe_sees_both_protocols_in_order(self):
        horizon = fresh_horizon()
        rp, kp = self.rconn(), self.kconn()
        self.assertEqual(rp.call("PUBLISH", "mix", "1"), (b":", b"0"))
        self.assertEqual(kp.publish([b"mix"], b"2"), STORED)
        self.assertEqual(rp.call("PUBLISH", "mix", "3"), (b":", b"0"))
        ks = self.kconn()
        self.assertEqual(ks.set(b"retro_subscribe", b"%d\r\nmix" % horizon), STORED)
        self.assertEqual(ks.get_raw(), kraken_block([((b"mix",), b"1"), ((b"mix",), b"2"),
                                                     ((b"mix",), b"3")]))


class Retroactive(unittest.TestCase):
    """PROVISIONAL: KRAKEN.REGISTER / KRAKEN.RETROSUBSCRIBE from Redis clients
    (see the module docstring); the expected frames are in one place here."""

    @classmethod
    def setUpClass(cls):
        cls.srv = rt.start("kraken")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def rconn(self):
        c = rt.Conn(self.srv.redis_port)
        self.addCleanup(c.close)
        return c

    def redis_py(self):
        r = redis.Redis(host=rt.HOST, port=self.srv.redis_port, socket_timeout=TIMEOUT)
        self.addCleanup(r.close)
        return r

    def test_register_raw(self):
        c = self.rconn()
        self.assertEqual(c.call("KRAKEN.REGISTER"), (b"+", b"OK"))
        self.assertEqual(self.rconn().call("PUBLISH", "rr", "after-register"), (b":", b"0"))
        c.send(R("SUBSCRIBE", "rr"))
        self.assertEqual(c.read_frames(2), [sub_frame(b"subscribe", b"rr", 1),
                                            bulk(b"message", b"rr", b"after-register")])
        self.assertEqual(self.rconn().call("PUBLISH", "rr", "live"), (b":", b"1"))
        self.assertEqual(c.read_frame(), bulk(b"message", b"rr", b"live"))

    def test_retrosubscribe_raw(self):
        horizon = fresh_horizon()
        rp, kp = self.rconn(), KConn(self.srv.kraken_port)
        self.addCleanup(kp.close)
        self.assertEqual(rp.call("PUBLISH", "rs1", "m1"), (b":", b"0"))
        self.assertEqual(kp.publish([b"rs1", b"rs2"], b"m2"), STORED)
        self.assertEqual(rp.call("PUBLISH", "rs2", "m3"), (b":", b"0"))
        c = self.rconn()
        c.send(R("KRAKEN.RETROSUBSCRIBE", horizon, "rs1", "rs2"))
        self.assertEqual(c.read_frames(2), [sub_frame(b"subscribe", b"rs1", 1),
                                            sub_frame(b"subscribe", b"rs2", 2)])
        got = c.read_frames(4)
        self.assertEqual(got, [bulk(b"message", b"rs1", b"m1"),
                               bulk(b"message", b"rs1", b"m2"), bulk(b"message", b"rs2", b"m2"),
                               bulk(b"message", b"rs2", b"m3")])
        self.assertTrue(c.quiet(0.15), c.buf)
        self.assertEqual(rp.call("PUBLISH", "rs1", "live"), (b":", b"1"))
        self.assertEqual(c.read_frame(), bulk(b"message", b"rs1", b"live"))

    def test_retrosubscribe_nothing_after_horizon(self):
        c = self.rconn()
        c.send(R("KRAKEN.RETROSUBSCRIBE", int(time.time()) + 3600, "future"))
        self.assertEqual(c.read_frame(), sub_frame(b"subscribe", b"future", 1))
        self.assertTrue(c.quiet(0.15), c.buf)

    def test_retrosubscribe_horizon_too_old(self):
        c = self.rconn()
        c.send(R("KRAKEN.RETROSUBSCRIBE", 1, "old"))
        self.assertEqual(c.read_frames(2), [sub_frame(b"subscribe", b"old", 1), NOTFOUND])
        self.assertEqual(self.rconn().call("PUBLISH", "old", "still subscribed"), (b":", b"1"))
        self.assertEqual(c.read_frame(), bulk(b"message", b"old", b"still subscribed"))

    def test_retrosubscribe_bad_arguments(self):
        c = self.rconn()
        self.assertEqual(c.call("KRAKEN.RETROSUBSCRIBE", "1"),
                         (b"-", b"ERR wrong number of arguments for 'kraken.retrosubscribe' command"))
        err = c.call("KRAKEN.RETROSUBSCRIBE", "yesterday", "ch")
        self.assertEqual(err[0], b"-")

    def test_redis_py_register_and_subscribe(self):
        r = self.redis_py()
        p = r.pubsub()
        self.addCleanup(p.close)
        p.execute_command("KRAKEN.REGISTER")
        self.assertEqual(p.parse_response(timeout=TIMEOUT), b"OK")
        self.assertEqual(r.publish("pyreg", "retained"), 0)
        p.subscribe("pyreg")
        m = [p.get_message(timeout=TIMEOUT) for _ in range(2)]
        self.assertEqual([(x["type"], x["data"]) for x in m],
                         [("subscribe", 1), ("message", b"retained")])

    def test_redis_py_retrosubscribe(self):
        horizon = fresh_horizon()
        r = self.redis_py()
        self.assertEqual(r.publish("pyretro", "old1"), 0)
        self.assertEqual(r.publish("pyretro", "old2"), 0)
        p = r.pubsub()
        self.addCleanup(p.close)
        p.execute_command("KRAKEN.RETROSUBSCRIBE", horizon, "pyretro")
        got = [p.parse_response(timeout=TIMEOUT) for _ in range(3)]
        self.assertEqual(got, [[b"subscribe", b"pyretro", 1], [b"message", b"pyretro", b"old1"],
                               [b"message", b"pyretro", b"old2"]])

    def test_redis_py_retrosubscribe_too_old(self):
        r = self.redis_py()
        p = r.pubsub()
        self.addCleanup(p.close)
        p.execute_command("KRAKEN.RETROSUBSCRIBE", 1, "pyold")
        self.assertEqual(p.parse_response(timeout=TIMEOUT), [b"subscribe", b"pyold", 1])
        with self.assertRaises(redis.exceptions.ResponseError) as cm:
            p.parse_response(timeout=TIMEOUT)
        self.assertIn("NOTFOUND horizon older than retained messages", str(cm.exception))


if __name__ == "__main__":
    if os.environ.get("REDIS_TARGET", "kraken") != "kraken":
        print("redis_cross_test: Kraken target only; skipped for %s" % os.environ["REDIS_TARGET"])
        sys.exit(0)
    unittest.main(verbosity=2)
