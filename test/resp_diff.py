#!/usr/bin/env python3
"""resp_diff.py - resp_parse() against redis-server, on the same byte streams.

Generates random pipelines of multibulk and inline commands (quotes,
escapes, empty lines, *0, *-1), most of them mutated (bytes replaced,
inserted, deleted, big or negative numbers spliced in, truncated), and sends
each on its own connection to redis-server 7.0, once as an authenticated
client (no password) and once as one that must still AUTH (requirepass).

Command names are made of letters no Redis command uses, so redis-server
answers every framed command with "-ERR unknown command '<name>', with args
beginning with: '<arg>' ...", which shows how it split the stream.  The same
streams go through build/resp_replay (our parser, test/diff/resp_replay.c);
from its commands and its end (a protocol error, or waiting for more) the
script builds the bytes redis-server must have sent, and whether it must
have closed the connection, and compares.

    make test-resp-diff            (or: test/resp_diff.py [--seed N] [--count N])
"""
import argparse
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from glob_diff import start_redis  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPLAY = os.path.join(ROOT, "build", "resp_replay")

NAMES = [b"xq", b"zz", b"qx1", b"XQ", b"q"]
ARG_BYTES = b"xyzq01 \"'\\\r\n\0\t*$-:\xff"
MUTATION_BYTES = b"*$\r\n\0-9\"' \\:+x"
SPLICES = [b"99999999999", b"-1", b"2147483648", b"2147483647", b"16385", b"16384", b"11",
           b"10", b"0", b"-0", b"01", b"536870913", b"\r\n", b"*1\r\n", b"$1\r\n", b"\\x4",
           b"\\x41", b"\"", b"'", b"\\'", b"\\\""]


def rand_arg(rng, maxlen=6):
    return bytes(rng.choice(ARG_BYTES) for _ in range(rng.randint(0, maxlen)))


def gen_command(rng):
    r = rng.random()
    if r < 0.5:
        args = [rng.choice(NAMES)] + [rand_arg(rng) for _ in range(rng.randint(0, 3))]
        out = b"*%d\r\n" % len(args)
        for a in args:
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        return out
    if r < 0.85:
        words = [rng.choice(NAMES)]
        for _ in range(rng.randint(0, 3)):
            k = rng.random()
            plain = bytes(rng.choice(b"xyz01-:*$") for _ in range(rng.randint(1, 4)))
            if k < 0.4:
                words.append(plain)
            elif k < 0.75:
                inner = b"".join(rng.choice([b"x", b"y ", b"\\n", b"\\\"", b"\\\\", b"\\x0a",
                                             b"\\x1", b"'", b"\\q", b"\t"])
                                 for _ in range(rng.randint(0, 4)))
                words.append(b'"' + inner + b'"')
            else:
                inner = b"".join(rng.choice([b"x", b"y ", b"\\'", b"\\n", b'"'])
                                 for _ in range(rng.randint(0, 4)))
                words.append(b"'" + inner + b"'")
        sep = lambda: rng.choice([b" ", b"  ", b"\t", b" \x0b"])  # noqa: E731
        line = words[0]
        for w in words[1:]:
            line += sep() + w
        return line + rng.choice([b"\r\n", b"\n"])
    return rng.choice([b"\r\n", b"\n", b"*0\r\n", b"*-1\r\n", b"  \r\n", b"*-7\r\n"])


def mutate(rng, s):
    s = bytearray(s)
    for _ in range(rng.randint(1, 3)):
        k = rng.random()
        i = rng.randint(0, len(s))
        if k < 0.3 and i < len(s):
            s[i] = rng.choice(MUTATION_BYTES)
        elif k < 0.5:
            s[i:i] = bytes([rng.choice(MUTATION_BYTES)])
        elif k < 0.65 and i < len(s):
            del s[i]
        elif k < 0.9:
            s[i:i] = rng.choice(SPLICES)
        else:
            del s[i:]
    return bytes(s)


def gen_stream(rng):
    s = b"".join(gen_command(rng) for _ in range(rng.randint(1, 5)))
    return mutate(rng, s) if rng.random() < 0.75 else s


def replay(streams, authed):
    data = b"".join(struct.pack("<BI", authed, len(s)) + s for s in streams)
    out = subprocess.run([REPLAY], input=data, stdout=subprocess.PIPE, check=True).stdout
    results, k = [], 0

    def u32():
        nonlocal k
        v = struct.unpack_from("<I", out, k)[0]
        k += 4
        return v

    for _ in streams:
        cmds, end = [], None
        while end is None:
            tag = out[k:k + 1]
            k += 1
            if tag == b"C":
                args = []
                for _ in range(u32()):
                    n = u32()
                    args.append(out[k:k + n])
                    k += n
                cmds.append(args)
            elif tag == b"E":
                n = u32()
                end = out[k:k + n]
                k += n
            else:
                assert tag == b"M", tag
                end = b""
        results.append((cmds, end))
    return results


def cstr(b):
    """What printf's %s sees of a Redis string: up to its first NUL."""
    i = b.find(b"\0")
    return b if i < 0 else b[:i]


def expected_reply(cmds, end):
    """The bytes redis-server sends, and whether it then closes."""
    out = b""
    for argv in cmds:
        args = b""
        for a in argv[1:]:
            if len(args) >= 128:
                break
            args += b"'" + cstr(a)[:128 - len(args)] + b"' "
        msg = (b"unknown command '" + cstr(argv[0])[:128] + b"', with args beginning with: "
               + args)
        out += b"-ERR " + msg.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
    return out + end, bool(end)


def redis_replies(port, streams, settle=0.4):
    """Sends each stream on its own connection; returns (bytes, closed) for each."""
    results = []
    for i in range(0, len(streams), 200):
        batch = streams[i:i + 200]
        socks = []
        for s in batch:
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(s)
            socks.append(c)
        got = [b""] * len(batch)
        closed = [False] * len(batch)
        deadline = time.time() + settle
        while time.time() < deadline:
            live = [j for j in range(len(batch)) if not closed[j]]
            if not live:
                break
            r, _, _ = select.select([socks[j] for j in live], [], [], 0.05)
            for c in r:
                j = socks.index(c)
                d = c.recv(1 << 16)
                if d:
                    got[j] += d
                else:
                    closed[j] = True
        for c in socks:
            c.close()
        results.extend(zip(got, closed))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    if not os.path.exists(REPLAY):
        sys.exit("resp_diff: build %s first (make build/resp_replay)" % REPLAY)
    streams = [gen_stream(rng) for _ in range(args.count)]
    failures = 0
    stats = {"commands": 0, "errors": 0}
    for authed, extra in ((1, ()), (0, ("--requirepass", "resp-diff-pw"))):
        ours = replay(streams, authed)
        proc, port = start_redis(extra)
        try:
            theirs = redis_replies(port, streams)
        finally:
            proc.terminate()
            proc.wait()
        for s, (cmds, end), (got, closed) in zip(streams, ours, theirs):
            want, want_closed = expected_reply(cmds, end)
            stats["commands"] += len(cmds)
            stats["errors"] += bool(end)
            if got != want or closed != want_closed:
                failures += 1
                if failures <= 15:
                    print("MISMATCH (%s) stream %r\n  redis: %r closed=%s\n  ours:  %r closed=%s"
                          % ("auth" if authed else "noauth", s, got, closed, want, want_closed))
    print("resp_diff: seed %d, %d streams x 2, %d commands, %d protocol errors, %d mismatches"
          % (seed, len(streams), stats["commands"], stats["errors"], failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
