"""A Kraken text-protocol client for tests that drive real nodes: requests
with replies (`set ...` answered by one line), and polling with `get
messages`.  Only the standard library."""
import re
import socket


class KrakenText:
    def __init__(self, addr, port, timeout=10):
        self.s = socket.create_connection((addr, port), timeout=timeout)
        self.buf = b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def set(self, cmd, data):
        self.s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (cmd, len(data), data))
        return self.line()

    def subscribe(self, *topics):
        r = self.set(b"subscribe", b" ".join(topics))
        assert r == b"STORED", r

    def unsubscribe(self, *topics):
        r = self.set(b"unsubscribe", b" ".join(topics))
        assert r == b"STORED", r

    def get_messages(self):
        """[(topics as listed, payload)] queued for this client; an error
        line (SERVER_ERROR ...) raises ConnectionError."""
        self.s.sendall(b"get messages\r\n")
        head = self.line()
        if head == b"END":
            return []
        m = re.match(rb"VALUE messages 0 (\d+)$", head)
        if not m:
            raise ConnectionError(head.decode(errors="replace"))
        block = self.exact(int(m.group(1)) + 2)
        assert self.line() == b"END"
        out = []
        while block:
            hdr, block = block.split(b"\r\n", 1)
            parts = [p for p in hdr.split(b" ") if p]
            n = int(parts[-1])
            out.append((tuple(parts[1:-1]), block[:n]))
            block = block[n + 2:]
        return out

    def close(self):
        self.s.close()
