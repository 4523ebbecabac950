"""docs/protocol.md is the protocol reference users read: its byte-exact
examples are replayed against a real server, every STAT field the server
sends is described there (and nothing else), and the README links it rather
than a file outside the repository.

In protocol.md, a fenced block whose lines start with `C: ` (sent) and `S: `
(expected) is replayed on a fresh connection, `\\r\\n` standing for CR LF;
blocks with placeholders (`<n>`, `...`) are not, nor the block after an
HTML comment `<!-- not replayed: ... -->`. A block holding only `S: VALUE
messages` lines is checked by publishing its entries to a subscriber of their
topics and comparing its `get messages` reply."""
import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kraken_server import ROOT, Server  # noqa: E402

DOC = os.path.join(ROOT, "docs", "protocol.md")


def blocks(text):
    """(skip, [lines]) of each fenced block."""
    out = []
    skip = False
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!-- not replayed"):
            skip = True
        elif line.startswith("```"):
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append((skip, lines[i + 1:j]))
            skip = False
            i = j
        i += 1
    return out


def wire(s):
    return s.replace("\\r\\n", "\r\n").encode()


def recv_exactly(sock, n, timeout=5):
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def entries(block):
    """[(topics, payload)] of a get messages value block."""
    out = []
    while block:
        line, rest = block.split(b"\r\n", 1)
        words = line.split(b" ")
        assert words[0] == b"MESSAGE", line
        n = int(words[-1])
        out.append((words[1:-1], rest[:n]))
        block = rest[n + 2:]
    return out


class ProtocolDocTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        with open(DOC) as f:
            cls.text = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        self.addCleanup(s.close)
        return s

    def test_examples_replayed(self):
        replayed = values = 0
        for skip, lines in blocks(self.text):
            if skip or not any(l.startswith(("C: ", "S: ")) for l in lines):
                continue
            if any("<" in l or "..." in l for l in lines):
                continue
            sent = b"".join(wire(l[3:]) for l in lines if l.startswith("C: "))
            expected = b"".join(wire(l[3:]) for l in lines if l.startswith("S: "))
            if sent:
                c = self.connect()
                c.sendall(sent)
                self.assertEqual(recv_exactly(c, len(expected)), expected, lines)
                replayed += 1
            else:
                for line in lines:
                    self.check_value(wire(line[3:]))
                    values += 1
        self.assertGreaterEqual(replayed, 6)
        self.assertGreaterEqual(values, 2)

    def check_value(self, reply):
        m = re.match(rb"VALUE messages 0 (\d+)\r\n", reply)
        self.assertTrue(m, reply)
        block = reply[m.end():]
        self.assertTrue(block.endswith(b"END\r\n"))
        block = block[:-len(b"END\r\n")]
        self.assertEqual(int(m.group(1)), len(block) - 2)
        ents = entries(block)
        topics = sorted({t for ts, _ in ents for t in ts})
        sub, pub = self.connect(), self.connect()
        sub.sendall(b"set subscribe 0 0 %d\r\n%s\r\n" % (len(b" ".join(topics)), b" ".join(topics)))
        self.assertEqual(recv_exactly(sub, 8), b"STORED\r\n")
        body = b"".join(b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(ts), len(p), p) for ts, p in ents)
        pub.sendall(b"set publish 0 0 %d\r\n%s\r\n" % (len(body), body))
        self.assertEqual(recv_exactly(pub, 8), b"STORED\r\n")
        time.sleep(0.05)
        sub.sendall(b"get messages\r\n")
        self.assertEqual(recv_exactly(sub, len(reply)), reply)

    def test_every_stat_documented(self):
        c = self.connect()
        c.sendall(b"stats\r\n")
        c.settimeout(5)
        data = b""
        while not data.endswith(b"END\r\n"):
            data += c.recv(65536)
        sent = [l.split(b" ")[1].decode() for l in data.split(b"\r\n") if l.startswith(b"STAT ")]
        table = re.search(r"\n### `stats`\n(.*?)\n## ", self.text, re.S).group(1)
        documented = re.findall(r"^\| `(\w+)` \|", table, re.M)
        self.assertEqual(sent, documented)

    def test_readme_links_it(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        self.assertIn("(docs/protocol.md)", readme)
        self.assertNotIn("SPEC.md", readme)
        self.assertIn("\n## Push mode (extension)\n", self.text)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("protocol doc: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
