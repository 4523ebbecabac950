"""The engine's control channel, driven from here as the Erlang node drives it
(docs/engine-protocol.md): {packet, 4} framing on the engine's stdin and
stdout, external terms encoded by the small codec below.

- bad packets (the review's binary longer than the packet, truncated terms,
  trailing bytes, huge counts, an oversized packet) are logged and ignored:
  the engine keeps answering calls and serving clients;
- stdin or stdout that is not a pipe (`kraken_engine </dev/null`) makes the
  engine exit at once with one clear line;
- a failed event_new at start-up (main.c, control.c) and a failed allocation
  in dump_topics are reported, not crashes nor an empty answer (the plain
  build, with test/fault/failmalloc.so preloaded: built by `make test-control`);
- log events are rate-limited by the engine, the drops counted and reported.

KRAKEN_ENGINE selects the engine build (default priv/kraken_engine)."""
import os
import queue
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAIN = os.path.join(ROOT, "priv", "kraken_engine")
ENGINE = os.environ.get("KRAKEN_ENGINE") or PLAIN
FAILMALLOC = os.path.join(ROOT, "build", "failmalloc.so")
LOG_RATE = 2000  # LOG_RATE in c_src/control.c


# ---- a minimal external term format codec ----

class Atom(str):
    pass


def enc(t):
    if isinstance(t, Atom):
        b = t.encode()
        return b"v" + struct.pack(">H", len(b)) + b
    if isinstance(t, bool):
        return enc(Atom("true" if t else "false"))
    if isinstance(t, int):
        if 0 <= t < 256:
            return b"a" + bytes([t])
        if -(1 << 31) <= t < (1 << 31):
            return b"b" + struct.pack(">i", t)
        mag = abs(t).to_bytes((abs(t).bit_length() + 7) // 8, "little")
        return b"n" + bytes([len(mag), t < 0]) + mag
    if isinstance(t, bytes):
        return b"m" + struct.pack(">I", len(t)) + t
    if isinstance(t, tuple):
        return b"h" + bytes([len(t)]) + b"".join(enc(e) for e in t)
    if isinstance(t, list):
        if not t:
            return b"j"
        return b"l" + struct.pack(">I", len(t)) + b"".join(enc(e) for e in t) + b"j"
    raise TypeError(t)


def term(t):
    return b"\x83" + enc(t)


def dec(b):
    t, rest = _dec(b[1:])
    assert b[0] == 131 and rest == b"", b
    return t


def _dec(b):
    tag, b = b[0], b[1:]
    if tag == ord("a"):
        return b[0], b[1:]
    if tag == ord("b"):
        return struct.unpack(">i", b[:4])[0], b[4:]
    if tag in (ord("n"), ord("o")):
        n, b = (b[0], b[1:]) if tag == ord("n") else (struct.unpack(">I", b[:4])[0], b[4:])
        v = int.from_bytes(b[1:1 + n], "little")
        return (-v if b[0] else v), b[1 + n:]
    if tag in (ord("d"), ord("v")):
        n = struct.unpack(">H", b[:2])[0]
        return Atom(b[2:2 + n].decode()), b[2 + n:]
    if tag in (ord("s"), ord("w")):
        return Atom(b[1:1 + b[0]].decode()), b[1 + b[0]:]
    if tag == ord("m"):
        n = struct.unpack(">I", b[:4])[0]
        return b[4:4 + n], b[4 + n:]
    if tag in (ord("h"), ord("i")):
        n, b = (b[0], b[1:]) if tag == ord("h") else (struct.unpack(">I", b[:4])[0], b[4:])
        out = []
        for _ in range(n):
            e, b = _dec(b)
            out.append(e)
        return tuple(out), b
    if tag == ord("j"):
        return [], b
    if tag == ord("l"):
        n, b = struct.unpack(">I", b[:4])[0], b[4:]
        out = []
        for _ in range(n):
            e, b = _dec(b)
            out.append(e)
        tail, b = _dec(b)  # ei encodes lists element by element: [a | [b | []]]
        assert isinstance(tail, list)
        return out + tail, b
    if tag == ord("k"):
        n = struct.unpack(">H", b[:2])[0]
        return list(b[2:2 + n]), b[2 + n:]
    raise ValueError("tag %d" % tag)


# ---- the engine as a port ----

class Engine:
    """The engine with pipes on its stdin and stdout, as open_port gives it.
    A thread reads its packets (as fast as a node would): calls' replies go
    to self.replies, log events to self.logs."""

    def __init__(self, engine=ENGINE, env=None):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([engine], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=dict(os.environ, **(env or {})))
        self.packets = queue.Queue()
        self.logs = []
        self.logs_lock = threading.Lock()
        self.ref = 0
        self.reading = threading.Event()  # cleared: a node that does not read
        self.reading.set()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        out = self.proc.stdout
        while True:
            self.reading.wait()
            hdr = out.read(4)
            if len(hdr) < 4:
                self.packets.put(None)
                return
            t = dec(out.read(struct.unpack(">I", hdr)[0]))
            if isinstance(t, tuple) and t and t[0] == "log":
                with self.logs_lock:
                    self.logs.append((str(t[1]), t[2]))
            else:
                self.packets.put(t)

    def send_raw(self, payload, length=None):
        n = len(payload) if length is None else length
        self.proc.stdin.write(struct.pack(">I", n) + payload)
        self.proc.stdin.flush()

    def send(self, t):
        self.send_raw(term(t))

    def recv(self, timeout=10):
        try:
            return self.packets.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no packet from the engine within %s s" % timeout)

    def start(self, **options):
        opts = dict(listen_ip=b"127.0.0.1", tcp_server_port=0, log_level=Atom("info"))
        opts.update(options)
        self.send((Atom("config"), [(Atom(k), v) for k, v in opts.items()]))
        t = self.recv()
        assert isinstance(t, tuple) and t[0] == "ready", t
        self.port = t[1]
        return self.port

    def call(self, request, timeout=10):
        self.ref += 1
        self.send((Atom("call"), self.ref, request))
        t = self.recv(timeout)
        assert t == (Atom("reply"), self.ref, t[2]), t
        return t[2]

    def stats(self):
        return {k.decode(): v for k, v in self.call(Atom("stats"))}

    def wait_log(self, text, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.logs_lock:
                for level, msg in self.logs:
                    if text in msg:
                        return level, msg
            time.sleep(0.02)
        raise AssertionError("no log event containing %r; got %r" % (text, self.logs[-5:]))

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def logs_with(self, text):
        with self.logs_lock:
            return [m for _, m in self.logs if text in m]

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the node is gone: the engine exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            self.proc.stdin.close()
        self.reader.join(5)
        self.proc.stdout.close()
        err = self.stderr_text()
        self.stderr.close()
        return err


def version(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"version\r\n")
        return s.recv(100)


class EngineCase(unittest.TestCase):
    ENGINE = ENGINE
    ENV = None

    def engine(self, **kw):
        e = Engine(kw.pop("engine", self.ENGINE), kw.pop("env", self.ENV))

        def done():
            err = e.close()
            self.assertNotIn("ERROR: AddressSanitizer", err)
            self.assertNotIn("runtime error", err)
            self.assertNotEqual(e.proc.returncode, -11, err)
        self.addCleanup(done)
        return e

    def assert_alive(self, e):
        self.assertIsNone(e.proc.poll(), e.stderr_text())
        self.assertEqual(e.call(Atom("dump_queues")), [])
        self.assertEqual(version(e.port), b"VERSION 1.0.0\r\n")


class DumpQueuesTest(EngineCase):
    def test_order_is_by_last_request(self):
        # As kraken_ctl_engine:dump_queues/0 says: the longest idle first, the most
        # recently active last, whatever the connection order.
        e = self.engine()
        e.start()
        a = socket.create_connection(("127.0.0.1", e.port), timeout=10)
        b = socket.create_connection(("127.0.0.1", e.port), timeout=10)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        for s in (a, b):
            time.sleep(0.01)  # (the engine's clock for this is in milliseconds)
            s.sendall(b"version\r\n")
            s.recv(100)
        peer = lambda s: ("127.0.0.1:%d" % s.getsockname()[1]).encode()
        self.assertEqual([q[1] for q in e.call(Atom("dump_queues"))], [peer(a), peer(b)])
        time.sleep(0.01)
        a.sendall(b"version\r\n")
        a.recv(100)
        self.assertEqual([q[1] for q in e.call(Atom("dump_queues"))], [peer(b), peer(a)])


# ---- bad packets ----

CONFIG = term((Atom("config"), [(Atom("foo"), 1)]))
BAD_PACKETS = [
    # the review's packet: {config, [{foo, <<BINARY_EXT of 0x40000000 bytes, none sent>>}]}
    ("binary past the packet",
     b"\x83h\x02d\x00\x06configl\x00\x00\x00\x01h\x02d\x00\x03foom\x40\x00\x00\x00j"),
    ("empty packet", b""),
    ("no version byte", enc((Atom("call"), 1, Atom("stats")))),
    ("truncated call", term((Atom("call"), 5, Atom("stats")))[:-3]),
    ("trailing bytes", term((Atom("call"), 6, Atom("stats"))) + b"j"),
    ("list of 2^32-1 elements", b"\x83h\x03d\x00\x04calla\x07l\xff\xff\xff\xffj"),
    ("tuple of 2^32-1 elements", b"\x83i\xff\xff\xff\xffd\x00\x04call"),
    ("atom past the packet", b"\x83h\x03d\x00\x04calla\x08d\xff\xffstats"),
    ("empty tuple", b"\x83h\x00"),
    ("call with no integer ref", term((Atom("call"), b"ref", Atom("stats")))),
    ("unknown packet", term((Atom("hello"), 1))),
    ("garbage", bytes(range(256)) * 4),
]


class BadPacketTest(EngineCase):
    def test_bad_packets_are_logged_and_ignored(self):
        e = self.engine()
        e.start()
        for name, payload in BAD_PACKETS:
            with self.subTest(packet=name):
                e.send_raw(payload)
                self.assert_alive(e)
        self.assertEqual(len(e.logs_with(b"control: bad packet of")), len(BAD_PACKETS))
        level, msg = e.wait_log(b"control: bad packet of 31 bytes ignored")
        self.assertEqual(level, "error")
        # A second config after start-up is ignored too.
        e.send((Atom("config"), [(Atom("tcp_server_port"), 1)]))
        self.assert_alive(e)
        e.wait_log(b"config packet ignored after start-up")

    def test_bad_packet_before_the_config(self):
        e = self.engine()
        e.send_raw(BAD_PACKETS[0][1])
        e.send_raw(b"")
        port = e.start()
        self.assertEqual(version(port), b"VERSION 1.0.0\r\n")
        self.assertIn("control: bad packet of 31 bytes ignored", e.stderr_text())

    def test_oversized_packet_is_skipped(self):
        e = self.engine()
        e.start()
        size = (64 << 20) + 1
        e.proc.stdin.write(struct.pack(">I", size))
        chunk = b"\x00" * (1 << 20)
        for _ in range(64):
            e.proc.stdin.write(chunk)
        e.proc.stdin.write(b"\x83")
        e.proc.stdin.flush()
        self.assert_alive(e)
        e.wait_log(b"control: packet of 67108865 bytes (over 67108864) ignored")

    def test_unknown_requests_get_badarg(self):
        e = self.engine()
        e.start()
        self.assertEqual(e.call(Atom("bogus")), (Atom("error"), Atom("badarg")))
        self.assertEqual(e.call((Atom("dump_queue_topics"), 1 << 70)),
                         (Atom("error"), Atom("badarg")))
        self.assertEqual(e.call((Atom("dump_queue_topics"), 3)), Atom("not_found"))
        self.assert_alive(e)

    def test_bad_config_is_refused(self):
        e = self.engine()
        e.send((Atom("config"), [(Atom("tcp_server_port"), b"x")]))
        t = e.recv()
        self.assertEqual(t[0], "error")
        self.assertIn(b"bad value for option tcp_server_port", t[1])
        self.assertEqual(e.proc.wait(10), 2)


# ---- stdin and stdout that are not pipes ----

class StdioTest(unittest.TestCase):
    def run_engine(self, stdin, stdout=subprocess.PIPE):
        t0 = time.time()
        p = subprocess.run([ENGINE], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                           timeout=10)
        return p, time.time() - t0

    def test_stdin_dev_null_exits_at_once(self):
        p, secs = self.run_engine(subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2)
        self.assertLess(secs, 2)
        err = p.stderr.decode()
        self.assertIn("stdin is a character device such as /dev/null, not a pipe from the "
                      "Erlang node", err)
        self.assertIn("--standalone", err)
        self.assertNotIn("epoll", err.lower())
        self.assertEqual(p.stdout, b"")

    def test_stdin_regular_file_exits_at_once(self):
        with tempfile.TemporaryFile() as f:
            f.write(CONFIG)
            f.seek(0)
            p, secs = self.run_engine(f)
        self.assertEqual(p.returncode, 2)
        self.assertIn("stdin is a regular file", p.stderr.decode())

    def test_stdout_regular_file_exits_at_once(self):
        with tempfile.TemporaryFile() as out:
            p = subprocess.Popen([ENGINE], stdin=subprocess.PIPE, stdout=out,
                                 stderr=subprocess.PIPE)
            _, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 2)
        self.assertIn("stdout is a regular file", err.decode())

    def test_stdin_pipe_at_eof_exits_at_once(self):
        p, secs = self.run_engine(subprocess.PIPE)  # run() closes it at once
        self.assertEqual(p.returncode, 0)
        self.assertLess(secs, 2)


# ---- failures at start-up and in dump_topics (plain build + failmalloc) ----

@unittest.skipUnless(os.path.exists(FAILMALLOC), "build/failmalloc.so not built")
class FaultTest(EngineCase):
    ENGINE = PLAIN  # AddressSanitizer does not mix with an LD_PRELOADed allocator

    def test_failed_event_new_at_start(self):
        # 1, 2: main.c's SIGINT and SIGTERM events; 3: control.c's log report timer
        for n in (1, 2, 3):
            with self.subTest(event_new=n):
                p = subprocess.Popen([PLAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     env=dict(os.environ, LD_PRELOAD=FAILMALLOC,
                                              KRAKEN_FAIL_EVENT_NEW=str(n)))
                try:
                    p.stdin.write(struct.pack(">I", len(CONFIG)) + CONFIG)
                    p.stdin.flush()
                except BrokenPipeError:
                    pass
                self.assertTrue(select.select([p.stderr], [], [], 5)[0], "still running")
                rc = p.wait(5)
                err = p.stderr.read().decode()
                try:
                    p.stdin.close()  # (flushes what the dead engine did not read)
                except BrokenPipeError:
                    pass
                p.stdout.close()
                p.stderr.close()
                self.assertIn(rc, (1, 2), err)  # not killed by a signal
                self.assertRegex(err, r"kraken_engine: .*out of memory")

    def test_failed_allocation_in_dump_topics_is_an_error(self):
        # dump_topics sorts an array of (topics + 1) pointers: with 12345
        # topics, 98768 bytes, a size nothing else here allocates.
        n = 12345
        e = self.engine(env=dict(LD_PRELOAD=FAILMALLOC, KRAKEN_FAIL_MALLOC_SIZE=str((n + 1) * 8)))
        e.start()
        with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
            data = b" ".join(b"t%d" % i for i in range(n))
            s.sendall(b"set subscribe 0 0 %d\r\n%s\r\n" % (len(data), data))
            self.assertEqual(s.recv(100), b"STORED\r\n")
            self.assertEqual(e.call(Atom("dump_topics")), (Atom("error"), Atom("out_of_memory")))
            e.wait_log(b"control: out of memory answering call")
            self.assertEqual(e.stats()["topics"], n)
            self.assertEqual(len(e.call(Atom("dump_queues"))), 1)


# ---- log events: rate-limited, drops counted and reported ----

class LogRateTest(EngineCase):
    def test_flood_is_rate_limited_and_counted(self):
        e = self.engine()
        e.start(log_level=Atom("debug"), router_min_publish_to_topics_to_warn=1)
        n = 3 * LOG_RATE
        with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
            # One publish of n entries: n warnings within one callback.
            block = b"".join(b"MESSAGE lr_%d 1\r\nx\r\n" % i for i in range(n))
            t0 = time.time()
            s.sendall(b"set publish 0 0 %d\r\n%s\r\n" % (len(block), block))
            self.assertEqual(s.recv(100), b"STORED\r\n")
            secs = time.time() - t0  # the engine logged them within this
            # Debug events have their own budget: they still get through.
            with socket.create_connection(("127.0.0.1", e.port), timeout=10) as c:
                c.sendall(b"version\r\n")
                c.recv(100)
                port = c.getsockname()[1]
            e.wait_log(b"connected from 127.0.0.1:%d" % port)
        note = e.wait_log(b"warning and error log events dropped: more than 2000 a second")
        self.assertEqual(note[0], "warning")

        def accounted():
            received = len(e.logs_with(b") published one entry to 1 topic [lr_"))
            reported = sum(int(m.split()[0]) for m in
                           e.logs_with(b"warning and error log events dropped: more than"))
            return received, reported
        deadline = time.time() + 10
        while sum(accounted()) < n and time.time() < deadline:
            time.sleep(0.1)
        received, reported = accounted()
        self.assertGreaterEqual(received, LOG_RATE)  # the burst
        self.assertLessEqual(received, LOG_RATE * (1 + secs) + 5)  # and the refill
        # Every event is either received or counted: exact accounting.
        self.assertEqual(received + reported, n)
        self.assertEqual(e.stats()["log_events_dropped"], reported)


    def test_node_not_reading_backlog_is_bounded(self):
        # The node stops reading (as when stopped or swapped out) while the
        # engine logs 2000 long warnings a second (~1.4 MB/s): past 8 MiB
        # waiting, events are dropped and counted, and reported once the
        # node reads again.
        e = self.engine()
        e.start(router_min_publish_to_topics_to_warn=1, messages_stored_per_router_shard=10)
        rss0 = e.rss_kb()
        e.reading.clear()
        topics = b" ".join((b"bl_%d_" % j).ljust(64, b"x") for j in range(8))
        block = b"MESSAGE %s 1\r\nx\r\n" % topics * 200
        n, t0 = 0, time.time()
        with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
            while time.time() - t0 < 9:  # 200 entries every 50 ms: 4000 a second
                s.sendall(b"set publish 0 0 %d\r\n%s\r\n" % (len(block), block))
                self.assertEqual(s.recv(100), b"STORED\r\n")  # served all along
                n += 200
                time.sleep(0.05)
            grown = e.rss_kb() - rss0
        e.reading.set()
        note = b"log events dropped: the Erlang node was not reading them"
        e.wait_log(note)
        e.wait_log(b"warning and error log events dropped: more than 2000 a second")

        def accounted():
            received = len(e.logs_with(b") published one entry to 8 topics [bl"))
            dropped = sum(int(m.split()[0]) for m in e.logs_with(b"log events dropped: "))
            return received, dropped
        deadline = time.time() + 10
        while sum(accounted()) < n and time.time() < deadline:
            time.sleep(0.1)
        received, dropped = accounted()
        backlog = sum(int(m.split()[0]) for m in e.logs_with(note))
        self.assertGreater(backlog, 0)
        self.assertEqual(received + dropped, n)
        self.assertEqual(e.stats()["log_events_dropped"], dropped)
        if "asan" not in os.path.basename(self.ENGINE):  # ASan's quarantine blurs it
            self.assertLess(grown, 16 * 1024, "engine RSS grew %d KiB" % grown)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("control: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
