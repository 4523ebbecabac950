"""Soak test: many clients subscribing, publishing, polling and disconnecting
at random against a real Kraken server, with a checker that accounts for
every delivery, and the engine's memory sampled throughout.

    /usr/bin/python3 test/soak.py [--duration 120] [--clients 48] [--threads 4]

Every published entry carries a unique id (and a payload derived from it, so
its bytes are checked too).  The checker keeps, under one lock, a logical
clock of when each request was sent and when its reply arrived, and judges
every `get messages` reply against it:

  must    a subscriber whose subscribe to one of the entry's topics was
          acknowledged before the publish was sent, and that sent no
          unsubscribe of it before the publish was acknowledged, must receive
          the entry exactly once, at the latest in the reply to its first poll
          sent after the publish was acknowledged, listing that topic;
  may     a subscriber whose subscription overlapped the publish only
          partly may receive it (at most once);
  never   anything else: its own entries, topics it never held then, an id
          nobody published, a payload that differs, a second copy, or entries
          of one publisher out of order.

A client that disconnects loses what was queued for it (not counted as lost).
A few "vandal" connections send malformed requests, which must get their exact
error reply and close, without disturbing anyone else.

Prints a summary; exits 1 on any lost, duplicated or unexpected delivery,
any error, or engine memory that keeps growing."""
import argparse
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kraken_server import Server, cpu_secs, rss_kb  # noqa: E402

HOST = "127.0.0.1"
STORED = b"STORED\r\n"
END = b"END\r\n"
VANDALISM = [  # (request, exact reply before the server closes)
    (b"bogus\r\n", b"ERROR\r\n"),
    (b"get nothing\r\n", b"ERROR\r\n"),
    (b"set subscribe 0 0 x\r\n", b"CLIENT_ERROR bad data chunk\r\n"),
    (b"set subscribe 0 0\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"set subscribe 0 0 3\r\nabcde\r\n", b"CLIENT_ERROR bad data chunk\r\n"),
    (b"set publish 0 0 14\r\nMESSAGE s1 9\r\n\r\n", b"CLIENT_ERROR bad publish entry\r\n"),
    (b"set retro_subscribe 0 0 5\r\nx\r\ns1\r\n", b"CLIENT_ERROR bad horizon\r\n"),
    (b"set publish 0 0 2000000000\r\n", b"CLIENT_ERROR request too large\r\n"),
    (b"x" * 9000, b"CLIENT_ERROR request too large\r\n"),
]


def payload_for(mid, size):
    head = b"%d.%d:" % (mid, size)
    body = random.Random(mid).randbytes(size)
    return head + body


def parse_block(block):
    out, i = [], 0
    for _ in range(len(block) + 1):
        if i == len(block):
            return out
        nl = block.index(b"\r\n", i)
        words = block[i:nl].split(b" ")
        if words[0] != b"MESSAGE":
            raise ValueError("bad entry line %r" % block[i:nl][:100])
        n = int(words[-1])
        payload = block[nl + 2:nl + 2 + n]
        if block[nl + 2 + n:nl + 4 + n] != b"\r\n":
            raise ValueError("bad entry terminator")
        out.append((tuple(w for w in words[1:-1] if w), payload))
        i = nl + 4 + n
    raise ValueError("unparsable block")


class Conn:
    def __init__(self, port, timeout=15.0):
        self.s = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def _fill(self):
        data = self.s.recv(1 << 20)
        if not data:
            raise EOFError("closed by server")
        self.buf += data

    def read_line(self):
        for _ in range(100000):
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return line
            self._fill()
        raise ValueError("no line")

    def read_exact(self, n):
        for _ in range(n // 1024 + 100000):
            if len(self.buf) >= n:
                break
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_get_reply(self):
        line = self.read_line()
        if line == END:
            return []
        if not line.startswith(b"VALUE messages 0 "):
            raise ValueError("bad reply %r" % line[:100])
        n = int(line.split()[3])
        data = self.read_exact(n + 2 + len(END))
        if not data.endswith(b"\r\n" + END):
            raise ValueError("bad reply end")
        return parse_block(data[:-len(END)])

    def read_until_close(self, limit=1 << 16):
        data, self.buf = self.buf, b""
        for _ in range(10000):
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
            if len(data) > limit:
                break
        return data

    def close(self, abrupt=False):
        if abrupt:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        self.s.close()


class Interval:
    __slots__ = ("sub_send", "sub_ack", "unsub_send", "unsub_ack")

    def __init__(self, sub_send):
        self.sub_send, self.sub_ack, self.unsub_send, self.unsub_ack = sub_send, None, None, None


class Client:
    def __init__(self, cid, conn):
        self.cid = cid
        self.conn = conn
        self.alive = True
        self.intervals = {}   # topic -> [Interval] (the last one may be current)
        self.must = {}        # message id -> (index of the poll that must have it, solid topics)
        self.received = set()
        self.listed = {}      # id -> topics listed, for entries received before their ack
        self.last_from = {}   # publisher cid -> last message id received from it
        self.polls_sent = 0
        self.last_poll_ts = 0
        self.lost = set()     # ids reported lost (a later arrival is reported "late")

    def current(self, topic):
        iv = self.intervals.get(topic)
        if iv and iv[-1].unsub_send is None:
            return iv[-1]
        return None


class Message:
    __slots__ = ("mid", "publisher", "topics", "unique", "size", "send_ts", "ack_ts")


class Checker:
    def __init__(self):
        self.lock = threading.Lock()
        self.clock = 0
        self.messages = {}
        self.holders = {}  # topic -> set of clients with a current interval on it
        self.next_id = 0
        self.next_cid = 0
        self.counts = dict.fromkeys(
            ["ops", "publishes", "entries", "polls", "subscribes", "unsubscribes",
             "reconnects", "vandals", "deliveries", "must", "lost", "duplicated",
             "unexpected", "corrupt", "out_of_order", "missing_topic",
             "abandoned_on_disconnect", "errors", "late"], 0)
        self.problems = []

    def tick(self):
        self.clock += 1
        return self.clock

    def problem(self, kind, text):
        self.counts[kind] += 1
        if len(self.problems) < 30:
            self.problems.append("%s: %s" % (kind, text))

    def new_client(self, conn):
        with self.lock:
            self.next_cid += 1
            return Client(self.next_cid, conn)

    # --- subscribe / unsubscribe ---
    def sub_sent(self, c, topics):
        ts = self.tick()
        fresh = []
        for t in topics:
            if c.current(t) is None:
                iv = Interval(ts)
                c.intervals.setdefault(t, []).append(iv)
                self.holders.setdefault(t, set()).add(c)
                fresh.append(iv)
        return fresh

    def sub_acked(self, fresh):
        ts = self.tick()
        for iv in fresh:
            iv.sub_ack = ts

    def unsub_sent(self, c, topics):
        ts = self.tick()
        ended = []
        for t in topics:
            iv = c.current(t)
            if iv is not None:
                iv.unsub_send = ts
                self.holders[t].discard(c)
                ended.append(iv)
        return ended

    def unsub_acked(self, ended):
        ts = self.tick()
        for iv in ended:
            iv.unsub_ack = ts

    # --- publish ---
    def pub_sent(self, c, entries):
        ts = self.tick()
        msgs = []
        for topics, size in entries:
            self.next_id += 1
            m = Message()
            m.mid, m.publisher, m.topics, m.size = self.next_id, c.cid, topics, size
            m.unique = tuple(dict.fromkeys(topics))
            m.send_ts, m.ack_ts = ts, None
            self.messages[m.mid] = m
            msgs.append(m)
        return msgs

    def pub_acked(self, c, msgs):
        ts = self.tick()
        for m in msgs:
            m.ack_ts = ts
            solid = {}
            for t in m.unique:
                for s in self.holders.get(t, ()):
                    if s is c or not s.alive:
                        continue
                    iv = s.current(t)
                    if iv is not None and iv.sub_ack is not None and iv.sub_ack < m.send_ts:
                        solid.setdefault(s, set()).add(t)
            for s, topics in solid.items():
                self.counts["must"] += 1
                if m.mid in s.received:
                    # it arrived before the publisher saw its reply: check it now
                    if not topics <= set(s.listed[m.mid]):
                        self.problem("missing_topic", "client %d: %d listed %r, held %r"
                                     % (s.cid, m.mid, s.listed[m.mid], topics))
                    continue
                s.must[m.mid] = (s.polls_sent, topics)

    # --- poll ---
    def poll_sent(self, c):
        c.last_poll_ts = self.tick()
        k = c.polls_sent
        c.polls_sent += 1
        return k

    def poll_got(self, c, k, entries):
        self.tick()
        for topics, payload in entries:
            self.counts["deliveries"] += 1
            try:
                mid = int(payload.split(b".", 1)[0])
            except ValueError:
                self.problem("corrupt", "client %d got payload %r" % (c.cid, payload[:40]))
                continue
            m = self.messages.get(mid)
            if m is None:
                self.problem("unexpected", "client %d got unknown id %d" % (c.cid, mid))
                continue
            if payload != payload_for(mid, m.size):
                self.problem("corrupt", "client %d: payload of %d differs" % (c.cid, mid))
            if mid in c.lost:
                self.problem("late", "client %d got %d after the poll that owed it" % (c.cid, mid))
            if mid in c.received:
                self.problem("duplicated", "client %d got %d again" % (c.cid, mid))
                continue
            c.received.add(mid)
            if m.ack_ts is None:
                c.listed[mid] = topics
            if m.publisher == c.cid:
                self.problem("unexpected", "client %d got its own %d" % (c.cid, mid))
            last = c.last_from.get(m.publisher, 0)
            if mid < last:
                self.problem("out_of_order", "client %d got %d after %d from %d"
                             % (c.cid, mid, last, m.publisher))
            c.last_from[m.publisher] = max(last, mid)
            # listed topics: the entry's, in the publisher's order, each once,
            # each held by this client at some time during the publish
            order = [m.unique.index(t) if t in m.unique else -1 for t in topics]
            if -1 in order or order != sorted(set(order)):
                self.problem("unexpected", "client %d: %d listed %r for %r"
                             % (c.cid, mid, topics, m.unique))
            end = m.ack_ts if m.ack_ts is not None else self.clock
            for t in topics:
                if not any(iv.sub_send < end and (iv.unsub_ack is None or iv.unsub_ack > m.send_ts)
                           for iv in c.intervals.get(t, ())):
                    self.problem("unexpected", "client %d got %d on %r it did not hold"
                                 % (c.cid, mid, t))
            need = c.must.pop(mid, None)
            if need is not None and not need[1] <= set(topics):
                self.problem("missing_topic", "client %d: %d listed %r, held %r"
                             % (c.cid, mid, topics, need[1]))
        for mid in [mid for mid, (req, _) in c.must.items() if req <= k]:
            req, solid = c.must.pop(mid)
            m = self.messages[mid]
            c.lost.add(mid)
            self.problem("lost", "client %d: no %d in poll %d (sent %d, reply at clock %d); "
                         "published [%d, %d] by %d to %r; held %r: %s" % (
                             c.cid, mid, k, c.last_poll_ts, self.clock, m.send_ts, m.ack_ts,
                             m.publisher, m.unique, sorted(solid),
                             [(t, [(iv.sub_send, iv.sub_ack, iv.unsub_send, iv.unsub_ack)
                                   for iv in c.intervals[t]]) for t in sorted(solid)]))

    def disconnected(self, c):
        c.alive = False
        for t, ivs in c.intervals.items():
            if ivs[-1].unsub_send is None:
                self.holders[t].discard(c)
        self.counts["abandoned_on_disconnect"] += len(c.must)
        c.must.clear()


class Soak:
    def __init__(self, args, port):
        self.args = args
        self.port = port
        self.checker = Checker()
        self.topics = []
        for i in range(args.topics):
            self.topics.append(b"b\x00\xff%d" % i if i % 10 == 0 else b"s%d" % i)
        self.stop_at = 0.0

    def connect(self):
        return self.checker.new_client(Conn(self.port))

    def worker(self, seed, nclients):
        rnd = random.Random(seed)
        ck = self.checker
        clients = [self.connect() for _ in range(nclients)]
        for _ in range(100000000):
            if time.time() >= self.stop_at:
                break
            i = rnd.randrange(nclients)
            c = clients[i]
            try:
                replaced = self.op(rnd, c)
            except (OSError, EOFError, ValueError) as e:
                with ck.lock:
                    ck.problem("errors", "client %d: %r" % (c.cid, e))
                    ck.disconnected(c)
                c.conn.close()
                replaced = self.connect()
            if replaced is not None:
                clients[i] = replaced
            with ck.lock:
                ck.counts["ops"] += 1
        self.final_clients.extend(clients)

    def op(self, rnd, c):
        ck = self.checker
        r = rnd.random()
        if r < 0.33:
            return self.poll(c)
        if r < 0.66:
            entries = []
            for _ in range(rnd.choice((1, 1, 1, 2, 3))):
                topics = [rnd.choice(self.topics) for _ in range(rnd.choice((1, 1, 2, 3, 4)))]
                if rnd.random() < 0.05:
                    topics.append(topics[0])  # a duplicate topic: routed and listed once
                size = rnd.choice((0, 10, 100, 300, 1000, 2000, 5000))
                entries.append((tuple(topics), size))
            with ck.lock:
                msgs = ck.pub_sent(c, entries)
                ck.counts["publishes"] += 1
                ck.counts["entries"] += len(msgs)
            block = b"".join(b"MESSAGE %s %d\r\n%s\r\n"
                             % (b" ".join(m.topics), len(p), p)
                             for m in msgs for p in [payload_for(m.mid, m.size)])
            pipelined_poll = rnd.random() < 0.2
            req = b"set publish 0 0 %d\r\n%s\r\n" % (len(block), block)
            k = None
            if pipelined_poll:
                with ck.lock:
                    k = ck.poll_sent(c)
                req += b"get messages\r\n"
            c.conn.s.sendall(req)
            line = c.conn.read_line()
            if line != STORED:
                raise ValueError("publish got %r" % line)
            with ck.lock:
                ck.pub_acked(c, msgs)
            if pipelined_poll:
                entries = c.conn.read_get_reply()
                with ck.lock:
                    ck.counts["polls"] += 1
                    ck.poll_got(c, k, entries)
            return None
        if r < 0.80:
            topics = rnd.sample(self.topics, rnd.choice((1, 2, 3, 5)))
            with ck.lock:
                fresh = ck.sub_sent(c, topics)
                ck.counts["subscribes"] += 1
            data = b" ".join(topics)
            c.conn.s.sendall(b"set subscribe 0 0 %d\r\n%s\r\n" % (len(data), data))
            line = c.conn.read_line()
            if line != STORED:
                raise ValueError("subscribe got %r" % line)
            with ck.lock:
                ck.sub_acked(fresh)
            return None
        if r < 0.92:
            with ck.lock:
                held = [t for t in c.intervals if c.current(t) is not None]
            topics = rnd.sample(held, min(len(held), rnd.choice((1, 2, 3)))) if held else []
            if rnd.random() < 0.2:
                topics.append(b"never-subscribed")
            with ck.lock:
                ended = ck.unsub_sent(c, topics)
                ck.counts["unsubscribes"] += 1
            data = b" ".join(topics)
            c.conn.s.sendall(b"set unsubscribe 0 0 %d\r\n%s\r\n" % (len(data), data))
            line = c.conn.read_line()
            if line != STORED:
                raise ValueError("unsubscribe got %r" % line)
            with ck.lock:
                ck.unsub_acked(ended)
            return None
        if r < 0.985:
            return self.poll(c)
        if r < 0.995:
            with ck.lock:
                ck.disconnected(c)
                ck.counts["reconnects"] += 1
            how = rnd.random()
            if how < 0.3:
                c.conn.s.sendall(b"quit\r\n")
                c.conn.read_until_close()
            c.conn.close(abrupt=how > 0.7)
            return self.connect()
        req, reply = rnd.choice(VANDALISM)
        v = Conn(self.port)
        try:
            v.s.sendall(req)
        except OSError:
            pass
        got = v.read_until_close()
        v.close()
        with ck.lock:
            ck.counts["vandals"] += 1
            if got != reply:
                ck.problem("errors", "vandal %r got %r, expected %r" % (req[:30], got[:80], reply))
        return None

    def poll(self, c):
        ck = self.checker
        with ck.lock:
            k = ck.poll_sent(c)
        c.conn.s.sendall(b"get messages\r\n")
        entries = c.conn.read_get_reply()
        with ck.lock:
            ck.counts["polls"] += 1
            ck.poll_got(c, k, entries)
        return None

    def run(self, engine_pid):
        args = self.args
        samples = []
        self.final_clients = []
        start = time.time()
        self.stop_at = start + args.duration
        per = [args.clients // args.threads + (1 if i < args.clients % args.threads else 0)
               for i in range(args.threads)]
        threads = [threading.Thread(target=self.worker, args=(args.seed * 1000 + i, n))
                   for i, n in enumerate(per)]
        cpu0 = cpu_secs(engine_pid)
        samples.append((0.0, rss_kb(engine_pid)))
        for t in threads:
            t.start()
        last_report = start
        for _ in range(int(args.duration / args.sample_every) + 1000):
            if not any(t.is_alive() for t in threads):
                break
            time.sleep(min(args.sample_every, max(0.0, self.stop_at - time.time()) + 0.05))
            now = time.time()
            if now <= self.stop_at + 0.1:
                samples.append((now - start, rss_kb(engine_pid)))
            if now - last_report >= 10:
                last_report = now
                with self.checker.lock:
                    n = dict(self.checker.counts)
                print("  %5.0f s  ops %d  entries %d  deliveries %d  rss %d KiB  lost %d dup %d "
                      "unexpected %d errors %d" % (now - start, n["ops"], n["entries"],
                                                   n["deliveries"], samples[-1][1], n["lost"],
                                                   n["duplicated"], n["unexpected"], n["errors"]),
                      flush=True)
        for t in threads:
            t.join(60)
        elapsed = time.time() - start
        # a final poll by every client settles every outstanding "must"
        for c in self.final_clients:
            if c.alive:
                try:
                    self.poll(c)
                except (OSError, EOFError, ValueError) as e:
                    with self.checker.lock:
                        self.checker.problem("errors", "final poll %d: %r" % (c.cid, e))
        with self.checker.lock:
            left = sum(len(c.must) for c in self.final_clients if c.alive)
            if left:
                self.checker.problem("lost", "%d entries still owed after the final poll" % left)
        cpu = cpu_secs(engine_pid) - cpu0
        samples.append((time.time() - start, rss_kb(engine_pid)))
        for c in self.final_clients:
            c.conn.close()
        return elapsed, samples, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (120)")
    ap.add_argument("--clients", type=int, default=48, help="concurrent client connections (48)")
    ap.add_argument("--threads", type=int, default=4, help="driver threads (4)")
    ap.add_argument("--topics", type=int, default=200, help="topic pool size (200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample-every", type=float, default=2.0, help="RSS sampling period (2 s)")
    ap.add_argument("--kraken", nargs=2, action="append", default=[], metavar=("OPTION", "VALUE"),
                    help="extra -kraken option for the server (repeatable)")
    args = ap.parse_args()
    if args.threads < 1 or args.clients < args.threads or args.duration <= 0:
        ap.error("need duration > 0 and clients >= threads >= 1")
    server = Server(*[tuple(o) for o in args.kraken])
    try:
        engine = server.engine_pid()
        engine_exe = os.readlink("/proc/%d/exe" % engine)
        print("soak: %.0f s, %d clients on %d threads, %d topics, server port %d, engine %s "
              "(pid %d)" % (args.duration, args.clients, args.threads, args.topics, server.port,
                            engine_exe, engine), flush=True)
        soak = Soak(args, server.port)
        elapsed, samples, cpu = soak.run(engine)
        still_same = server.engine_pid() == engine
    finally:
        server.stop()
    with open(server.log_path, "rb") as f:
        log = f.read()
    sanitizer = [w for w in (b"AddressSanitizer", b"runtime error:") if w in log]
    ck = soak.checker
    n = ck.counts
    rss = [r for _, r in samples]
    half = [r for t, r in samples if t >= elapsed / 2]
    first_half = [r for t, r in samples if 0 < t < elapsed / 2] or rss[:1]
    # flat: the second half never rises more than 10% (+4 MiB) above the first half's peak
    flat = max(half) <= max(first_half) * 1.10 + 4096
    bad = sum(n[k] for k in ("lost", "late", "duplicated", "unexpected", "corrupt", "out_of_order",
                             "missing_topic", "errors"))
    print("soak summary")
    print("  duration            %.1f s, %d clients, %d threads, %d topics"
          % (elapsed, args.clients, args.threads, args.topics))
    print("  operations          %d (%.0f/s): %d publishes (%d entries), %d polls, "
          "%d subscribes, %d unsubscribes, %d reconnects, %d vandal connections"
          % (n["ops"], n["ops"] / elapsed, n["publishes"], n["entries"], n["polls"],
             n["subscribes"], n["unsubscribes"], n["reconnects"], n["vandals"]))
    print("  deliveries          %d (%.0f/s); owed by the rules %d: %d checked exactly once, "
          "%d dropped with their subscriber's disconnect (allowed)"
          % (n["deliveries"], n["deliveries"] / elapsed, n["must"],
             n["must"] - n["abandoned_on_disconnect"], n["abandoned_on_disconnect"]))
    print("  lost %d, late %d, duplicated %d, unexpected %d, corrupt %d, out of order %d, "
          "missing topic %d, errors %d"
          % (n["lost"], n["late"], n["duplicated"], n["unexpected"], n["corrupt"],
             n["out_of_order"], n["missing_topic"], n["errors"]))
    print("  engine RSS (KiB)    start %d, after 10%% %d, at half %d, max %d, end %d -> %s"
          % (rss[0], next((r for t, r in samples if t >= elapsed * 0.1), rss[-1]),
             half[0], max(rss), rss[-1], "flat" if flat else "GROWING"))
    print("  engine CPU          %.1f s (%.0f%% of one core); engine restarted: %s; "
          "sanitizer reports: %s" % (cpu, 100 * cpu / elapsed, "no" if still_same else "YES",
                                     b", ".join(sanitizer).decode() or "none"))
    print("  server log          %s" % server.log_path)
    for p in ck.problems:
        print("  ! " + p)
    ok = bad == 0 and flat and still_same and not sanitizer
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
