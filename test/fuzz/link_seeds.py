#!/usr/bin/env python3
"""Writes the seed corpus of test/fuzz/fuzz_link.c into test/fuzz/corpus/link/.

Each seed is the harness's input: a byte choosing the upstreams (0: member
cores, 1: static upstreams, 2: parents), then steps (see fuzz_link.c):
bytes from a link's peer, its EOF, a timer, a client's request.  The streams
are what a core, a parent or a static upstream sends, answering the requests
the harness's clients have in flight after its set-up (run the harness with
FUZZ_LINK_TRACE=1 to see them):
  u1 (link 0): set subscribe ta00; set link_retro ta00
  u2 (link 1): set subscribe tb10 tb00 x ta20-0; set link_retro ta20-0;
               set publish (tb00)
and, once those are answered, what the released clients send next.  Every
reply form of proto_link.c, valid, then cut short (the rest never comes:
EOF), then with a byte changed.

    python3 test/fuzz/link_seeds.py     (rewrites the seed-* files)

The regress-* files beside them are inputs the fuzzer found (kept as they are).
"""
import os

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "link")


def feed(u, data):
    """Bytes for link u, in chunks of at most 32."""
    out = bytearray()
    while data:
        n = min(len(data), 32)
        if n <= 16:
            out.append(u | 3 << 1 | (n - 1) << 4)
        else:
            out.append(u | 7 << 1 | (n - 17) << 4)
        out += data[:n]
        data = data[n:]
    return bytes(out)


def eof(u):
    return bytes([u])


def timer(u, which):  # 0 ping, 1 poll, 2 retry
    return bytes([u | 1 << 1 | which << 4])


def reconfigure():  # u2 leaves the view, or comes back
    return bytes([1 << 1 | 3 << 4])


def client(slot, what):
    return bytes([2 << 1 | slot << 4, what])


def block(kind, entries):
    body = b"".join(entries)
    return b"VALUE %s %d\r\n" % (kind, len(body) - 2) + body + b"END\r\n"


def entry(topics, payload, shard=False):
    return (b"S" if shard else b"") + b"MESSAGE %s %d\r\n%s\r\n" % (topics, len(payload), payload)


PUSH0 = block(b"messages 0", [entry(b"ta00", b"hello"), entry(b"ta00 zz", b"two topics")])
PUSH1 = block(b"messages 0", [entry(b"tb10 tb00", b"x" * 40), entry(b"tb10", b"shard", True)])
RETRO0 = block(b"retro 1000", [entry(b"ta00", b"old"), entry(b"nobody", b"not asked")])
RETRO1 = block(b"retro 1001", [entry(b"ta20-0", b"older")])
LOST = block(b"lost", [b"tb10 tb00\r\n"])

# Answers in FIFO order: u1 owes subscribe, link_retro; u2 subscribe,
# link_retro, publish.
ANSWER0 = b"STORED\r\n" + RETRO0 + b"STORED\r\n" + PUSH0
ANSWER1 = b"STORED\r\n" + RETRO1 + b"STORED\r\nSTORED\r\n" + PUSH1

seeds = {}


def seed(name, variant, *steps):
    seeds[name] = bytes([variant]) + b"".join(steps)


for v in range(3):
    seed("answers-%d" % v, v, feed(0, ANSWER0), feed(1, ANSWER1),
         client(0, 6), client(2, 2), client(1, 3), feed(0, b"STORED\r\nSTORED\r\n"),
         feed(1, b"STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\n" + PUSH1))
    seed("interleaved-%d" % v, v, *[feed(i % 2, (ANSWER0, ANSWER1)[i % 2][j:j + 7])
                                    for j in range(0, 140, 7) for i in range(2)])
    seed("not-found-%d" % v, v, feed(0, b"STORED\r\nNOT_FOUND\r\n"),
         feed(1, b"STORED\r\nNOT_FOUND\r\nSTORED\r\n"), client(1, 4),
         feed(0, b"STORED\r\nNOT_FOUND\r\n"))
    seed("refused-%d" % v, v, feed(0, b"STORED\r\nSTORED\r\n"),
         feed(1, b"STORED\r\nSTORED\r\nSERVER_ERROR cluster core unavailable\r\n"),
         client(1, 2), feed(1, b"SERVER_ERROR cluster core unavailable\r\n"))
    seed("lost-%d" % v, v, feed(0, ANSWER0), feed(1, ANSWER1), feed(1, LOST),
         feed(0, block(b"lost", [b"ta00\r\n"])))
    # a Redis pattern (held at both upstreams when they are cores or
    # parents), named lost by link 0 (VALUE plost), another refused by link 1
    seed("plost-%d" % v, v, feed(0, ANSWER0), feed(1, ANSWER1), client(2, 8),
         feed(0, b"STORED\r\n"), feed(1, b"STORED\r\n" + PUSH1),
         feed(0, block(b"plost", [b"t*\r\n"])), client(3, 8), feed(0, b"STORED\r\n"),
         feed(1, b"SERVER_ERROR cluster core unavailable\r\n"),
         feed(0, b"VALUE plost 2\r\nt*\r\nEND\r\n"), client(3, 10),
         feed(0, b"STORED\r\n"), feed(1, b"STORED\r\n"),
         feed(0, block(b"slost", [b"tb00 ta00\r\n"])))
    seed("ping-%d" % v, v, timer(0, 0), feed(0, b"VERSION 1.0.0\r\n"), timer(1, 0),
         timer(1, 0), feed(1, b"STORED\r\nVERSION 1.0.0\r\n"), timer(0, 1))
    seed("eof-retry-%d" % v, v, feed(0, ANSWER0[:30]), eof(0), timer(0, 2),
         feed(0, b"VERSION 1.0.0\r\n" + PUSH0), feed(1, ANSWER1), eof(1),
         timer(1, 2), feed(1, b"ERROR\r\n"), timer(1, 2), feed(1, b"END\r\n"), timer(1, 1),
         feed(1, PUSH1))
    seed("push-refused-%d" % v, v, eof(0), timer(0, 2), feed(0, b"ERROR\r\n"), timer(0, 2),
         feed(0, b"END\r\n"), timer(0, 1), feed(0, PUSH0 + b"STORED\r\nSTORED\r\n"),
         timer(0, 1), feed(0, b"END\r\n"))
    # client 0 becomes a proxy below (set child): its link_retro is relayed
    # upstream; a lost link tells it VALUE lost
    seed("child-%d" % v, v, client(0, 11), client(0, 8), feed(0, ANSWER0), feed(1, ANSWER1),
         client(0, 8), feed(0, b"STORED\r\n" + RETRO0 + b"STORED\r\n"),
         feed(1, RETRO1 + b"STORED\r\n"), client(0, 2), eof(1), feed(0, b"STORED\r\n"))
    # u2 leaves the view with answers owed, u1 answers on, u2 comes back
    seed("leave-%d" % v, v, feed(0, b"STORED\r\n"), reconfigure(), feed(0, ANSWER0),
         client(1, 2), client(2, 0), reconfigure(), feed(1, b"VERSION 1\r\nVERSION 1\r\n"),
         feed(1, b"STORED\r\nSTORED\r\n" + PUSH1), feed(0, b"STORED\r\nSTORED\r\n"))
    for i, bad in enumerate([b"ERROR\r\n", b"CLIENT_ERROR bad data chunk\r\n",
                             b"SERVER_ERROR out of memory\r\n", b"VALUE messages 0 x\r\n",
                             b"VALUE messages 0 99999999999\r\n", PUSH0[:-3] + b"ENX\r\n",
                             b"VALUE retro 5 2\r\nab\r\nEND\r\n", b"VALUE lost 1\r\nab\r\nEND\r\n",
                             b"VALUE plost 1\r\nab\r\nEND\r\n", b"VALUE slost 1\r\nab\r\nEND\r\n",
                             b"STORED\n", b"STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\n",
                             b"x" * 600]):
        seed("bad-%d-%d" % (v, i), v, feed(0, b"STORED\r\n"), feed(0, bad), timer(0, 2),
             feed(0, b"VERSION 1\r\n"))
    for i, s in enumerate([ANSWER0, ANSWER1]):
        for cut in (5, len(s) // 3, len(s) // 2, len(s) - 3):
            seed("cut-%d-%d-%d" % (v, i, cut), v, feed(i, s[:cut]), eof(i), timer(i, 2))
        flipped = bytearray(s)
        flipped[len(s) // 2] ^= 0x20
        seed("flip-%d-%d" % (v, i), v, feed(i, bytes(flipped)))

os.makedirs(DIR, exist_ok=True)
for f in os.listdir(DIR):
    if f.startswith("seed-"):
        os.remove(os.path.join(DIR, f))
for name, data in sorted(seeds.items()):
    with open(os.path.join(DIR, "seed-" + name), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(seeds), DIR))
