#!/usr/bin/env python3
"""glob_diff.py - glob_match() against redis-server's own pattern matching.

Starts redis-server on a free port (no persistence), PSUBSCRIBEs one
connection to a few hundred patterns, PUBLISHes a few hundred channels from
another, and records which patterns each channel reached (the pmessages).
The same (pattern, channel) pairs go through build/glob_match (our
glob_match, see test/diff/glob_match.c); every answer must agree.

Patterns and channels are random strings over the bytes that matter to
the matcher (* ? [ ] ^ - \\, a few letters, NUL, bytes >= 0x80), plus fixed
cases: Redis's own test patterns, the signed-char ranges, and the nesting
limit (more than 1000 '*').

    make test-glob-diff            (or: test/glob_diff.py [--seed N] [--rounds N])
"""
import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATCHER = os.path.join(ROOT, "build", "glob_match")
REDIS = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Conn:
    """A minimal RESP2 client: commands out, replies parsed into Python values."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(30)
        self.buf = b""

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("redis-server closed the connection")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-"):
            if t == b"-":
                raise RuntimeError(rest.decode(errors="replace"))
            return rest
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)


def start_redis(extra=()):
    port = free_port()
    d = tempfile.mkdtemp(prefix="glob_diff.")
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "log"), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                sys.exit("glob_diff: redis-server exited (%s)" % proc.returncode)
            time.sleep(0.05)
    proc.kill()
    sys.exit("glob_diff: redis-server did not start")


ALPHABET = b"**??[[]]^-\\abcab" + bytes([0, 0x80, 0xff, 0x61, 0x7a])


def rand_bytes(rng, maxlen):
    return bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, maxlen)))


FIXED_PATTERNS = [
    b"*", b"**", b"?", b"", b"foo*", b"foo.*", b"bar.*", b"chan.*", b"ch*", b"h?llo",
    b"h*llo", b"h[ae]llo", b"h[^e]llo", b"h[a-b]llo", b"h[b-a]llo", b"[a-]", b"[]]", b"[\\]]",
    b"[\\", b"[a", b"[^", b"\\", b"a\\", b"\\*", b"[a-\xff]", b"[\x80-\xfe]", b"[\xff-a]",
    b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
    b"*a" * 1000, b"*a" * 1001, b"*?" * 1001,
]
FIXED_CHANNELS = [
    b"", b"a", b"foo", b"foo.", b"foo.1", b"bar.x", b"chan", b"hello", b"hallo", b"hbllo",
    b"hillo", b"-", b"]", b"\\", b"*", b"\xff", b"\x80", b"\x90", b"0", b"b", b"\x00",
    b"a" * 40, b"a" * 2000, b"a" * 2001,
]


def redis_matches(sub, pub, patterns, channels):
    """{(pattern index, channel index)} reached, per redis-server."""
    for i in range(0, len(patterns), 100):
        sub.send(b"PSUBSCRIBE", *patterns[i:i + 100])
        for _ in patterns[i:i + 100]:
            kind, _, _ = sub.reply()
            assert kind == b"psubscribe", kind
    index = {p: i for i, p in enumerate(patterns)}
    hits = set()
    for ci, ch in enumerate(channels):
        pub.send(b"PUBLISH", ch, b"m%d" % ci)
        n = pub.reply()
        for _ in range(n):
            kind, pat, got_ch, msg = sub.reply()
            assert kind == b"pmessage" and got_ch == ch and msg == b"m%d" % ci
            hits.add((index[pat], ci))
    sub.send(b"PUNSUBSCRIBE")
    for _ in patterns:
        sub.reply()
    return hits


def our_matches(patterns, channels):
    recs = []
    for p in patterns:
        for c in channels:
            recs.append(struct.pack("<I", len(p)) + p + struct.pack("<I", len(c)) + c)
    out = subprocess.run([MATCHER], input=b"".join(recs), stdout=subprocess.PIPE,
                         check=True).stdout
    assert len(out) == len(patterns) * len(channels)
    hits = set()
    k = 0
    for pi in range(len(patterns)):
        for ci in range(len(channels)):
            if out[k:k + 1] == b"1":
                hits.add((pi, ci))
            k += 1
    return hits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--patterns", type=int, default=300)
    ap.add_argument("--channels", type=int, default=300)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    if not os.path.exists(MATCHER):
        sys.exit("glob_diff: build %s first (make build/glob_match)" % MATCHER)
    proc, port = start_redis()
    failures = 0
    pairs = 0
    matched = 0
    try:
        sub, pub = Conn(port), Conn(port)
        for r in range(args.rounds):
            pats = set(FIXED_PATTERNS) if r == 0 else set()
            while len(pats) < args.patterns:
                pats.add(rand_bytes(rng, 8))
            patterns = sorted(pats)
            chans = set(FIXED_CHANNELS) if r == 0 else set()
            while len(chans) < args.channels:
                chans.add(rand_bytes(rng, 10))
            channels = sorted(chans)
            theirs = redis_matches(sub, pub, patterns, channels)
            ours = our_matches(patterns, channels)
            pairs += len(patterns) * len(channels)
            matched += len(theirs)
            for pi, ci in sorted(theirs ^ ours):
                failures += 1
                if failures <= 20:
                    print("MISMATCH pattern %r channel %r: redis %s, ours %s" % (
                        patterns[pi][:60], channels[ci][:60],
                        (pi, ci) in theirs, (pi, ci) in ours))
    finally:
        proc.terminate()
        proc.wait()
    print("glob_diff: seed %d, %d pairs (%d matching), %d mismatches" % (
        seed, pairs, matched, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
