"""Black-box test: Debian's python3-pymemcache, a third-party memcached
client, against a real Kraken server, with and without noreply."""
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pymemcache.client.base import Client  # noqa: E402

from kraken_server import Server  # noqa: E402


def entry(topics, payload):
    return b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(topics), len(payload), payload)


class PymemcacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def client(self, noreply=False):
        c = Client(("127.0.0.1", self.server.port), default_noreply=noreply,
                   connect_timeout=5, timeout=5)
        self.addCleanup(c.close)
        return c

    def test_version(self):
        self.assertEqual(self.client().version(), b"1.0.0")

    def test_readme_example(self):
        k1, k2 = self.client(), self.client()
        self.assertTrue(k1.set("subscribe", b"topicA topicB"))
        self.assertIsNone(k1.get("messages"))
        self.assertTrue(k2.set("publish", entry([b"topicA"], b"hi there!")))
        self.assertEqual(k1.get("messages"), b"MESSAGE topicA 9\r\nhi there!")
        self.assertIsNone(k1.get("messages"))
        self.assertTrue(k2.set("unsubscribe", b"topicA"))

    def test_binary_payloads_and_batches(self):
        sub, pub = self.client(), self.client()
        sub.set("subscribe", b"bin1 bin2")
        p1, p2 = b"a\r\nb\x00c\xff", b""
        pub.set("publish", entry([b"bin1"], p1) + entry([b"bin2", b"bin1"], p2))
        self.assertEqual(sub.get("messages"),
                         entry([b"bin1"], p1) + entry([b"bin2", b"bin1"], p2)[:-2])

    def test_noreply(self):
        sub, pub = self.client(noreply=True), self.client(noreply=True)
        # noreply: set returns at once and the server must not send STORED,
        # or the following get would read it instead of its own reply.
        self.assertTrue(sub.set("subscribe", b"nr"))
        self.assertTrue(pub.set("publish", entry([b"nr"], b"one")))
        self.assertTrue(pub.set("publish", entry([b"nr"], b"two")))
        self.assertEqual(pub.get("messages"), None)
        got = sub.get("messages")
        self.assertEqual(got, entry([b"nr"], b"one") + entry([b"nr"], b"two")[:-2])
        self.assertTrue(sub.set("unsubscribe", b"nr"))
        self.assertTrue(pub.set("publish", entry([b"nr"], b"three")))
        self.assertIsNone(pub.get("messages"))
        self.assertIsNone(sub.get("messages"))

    def test_stats(self):
        stats = self.client().stats()
        for name in (b"curr_connections", b"topics", b"subscriptions",
                     b"messages_published", b"messages_delivered", b"queued_bytes", b"uptime"):
            self.assertIn(name, stats)

    def test_unknown_key_closes_only_that_connection(self):
        other = self.client()
        other.set("subscribe", b"err1")
        raw = socket.create_connection(("127.0.0.1", self.server.port))
        raw.sendall(b"get nothing\r\n")
        self.assertEqual(raw.recv(100), b"ERROR\r\n")
        self.assertEqual(raw.recv(100), b"")
        raw.close()
        self.client().set("publish", entry([b"err1"], b"still here"))
        self.assertEqual(other.get("messages"), b"MESSAGE err1 10\r\nstill here")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("pymemcache: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
