"""Fault injection: allocations fail for one client's request.

The engine runs standalone with test/fault/failmalloc.so preloaded, making
every allocation over 4 MiB fail.  A client publishing an 8 MiB payload must
get `SERVER_ERROR out of memory` and be disconnected, while the engine keeps
running and another subscriber keeps receiving, losing nothing."""
import os
import re
import socket
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setc(cmd, data):
    return b"set %s 0 0 %d\r\n%s\r\n" % (cmd, len(data), data)


def entry(topics, payload):
    return b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(topics), len(payload), payload)


def recv_until(sock, end, limit=1 << 20):
    sock.settimeout(10)
    got = b""
    while not got.endswith(end) and len(got) < limit:
        d = sock.recv(65536)
        if not d:
            break
        got += d
    return got


class FaultTest(unittest.TestCase):
    def setUp(self):
        env = dict(os.environ, LD_PRELOAD=os.path.join(ROOT, "build", "failmalloc.so"),
                   KRAKEN_FAIL_MALLOC_ABOVE=str(4 << 20))
        self.proc = subprocess.Popen(
            [os.environ.get("KRAKEN_ENGINE") or os.path.join(ROOT, "priv", "kraken_engine"),
             "--standalone",
             "--tcp_server_port", "0", "--listen_ip", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode()
        self.port = int(re.match(r"listening (\d+)", line).group(1))

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        self.addCleanup(s.close)
        return s

    def test_failed_allocation_ends_only_that_request(self):
        sub, pub, victim = self.connect(), self.connect(), self.connect()
        sub.sendall(setc(b"subscribe", b"t"))
        self.assertEqual(recv_until(sub, b"\r\n"), b"STORED\r\n")
        pub.sendall(setc(b"publish", entry([b"t"], b"before")))
        self.assertEqual(recv_until(pub, b"\r\n"), b"STORED\r\n")

        victim.sendall(setc(b"publish", entry([b"t"], b"x" * (8 << 20))))
        self.assertEqual(recv_until(victim, b"\r\n"), b"SERVER_ERROR out of memory\r\n")
        self.assertEqual(victim.recv(100), b"")  # closed

        self.assertIsNone(self.proc.poll(), "the engine died")
        pub.sendall(setc(b"publish", entry([b"t"], b"after")))
        self.assertEqual(recv_until(pub, b"\r\n"), b"STORED\r\n")
        sub.sendall(b"get messages\r\n")
        want = entry([b"t"], b"before") + entry([b"t"], b"after")
        self.assertEqual(recv_until(sub, b"END\r\n"),
                         b"VALUE messages 0 %d\r\n%sEND\r\n" % (len(want) - 2, want))

    def test_subscriber_whose_queue_cannot_grow_is_disconnected_and_logged(self):
        # The queue ring of a subscriber that never polls doubles as it grows;
        # past 262,144 entries the next ring needs 8 MiB and fails. That
        # subscriber is disconnected and logged; nobody else loses anything.
        victim, other, pub = self.connect(), self.connect(), self.connect()
        victim.sendall(setc(b"subscribe", b"flood"))
        self.assertEqual(recv_until(victim, b"\r\n"), b"STORED\r\n")
        other.sendall(setc(b"subscribe", b"calm"))
        self.assertEqual(recv_until(other, b"\r\n"), b"STORED\r\n")
        batch = entry([b"flood"], b"x") * 1000
        for i in range(300):
            pub.sendall(setc(b"publish", batch))
            self.assertEqual(recv_until(pub, b"\r\n"), b"STORED\r\n")
        self.assertEqual(recv_until(victim, b"\r\n"), b"SERVER_ERROR out of memory\r\n")
        self.assertEqual(victim.recv(100), b"")
        pub.sendall(setc(b"publish", entry([b"calm"], b"fine")))
        self.assertEqual(recv_until(pub, b"\r\n"), b"STORED\r\n")
        other.sendall(b"get messages\r\n")
        want = entry([b"calm"], b"fine")
        self.assertEqual(recv_until(other, b"END\r\n"),
                         b"VALUE messages 0 %d\r\n%sEND\r\n" % (len(want) - 2, want))
        self.proc.terminate()
        self.proc.wait(10)
        self.assertIn(b"out of memory queuing a message for it; disconnecting it",
                      self.proc.stderr.read())

    def test_writes_to_vanished_clients_do_not_kill_the_engine(self):
        # Started from here the engine gets SIGPIPE's default action (fatal),
        # not the VM's inherited SIG_IGN: it must ignore it itself. Clients ask
        # for an 8 MiB reply (more than the socket buffers) and close at once,
        # so the engine is still writing when their kernels reset.
        pub = self.connect()
        for i in range(5):
            c = socket.create_connection(("127.0.0.1", self.port))
            c.sendall(setc(b"subscribe", b"pipe%d" % i))
            self.assertEqual(recv_until(c, b"\r\n"), b"STORED\r\n")
            for _ in range(8):
                pub.sendall(setc(b"publish", entry([b"pipe%d" % i], b"p" * (1 << 19))))
                self.assertEqual(recv_until(pub, b"\r\n"), b"STORED\r\n")
            c.sendall(b"get messages\r\n")
            c.close()
        time.sleep(0.5)
        self.assertIsNone(self.proc.poll(), "the engine died")
        pub.sendall(b"version\r\n")
        self.assertEqual(recv_until(pub, b"\r\n"), b"VERSION 1.0.0\r\n")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("fault: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
