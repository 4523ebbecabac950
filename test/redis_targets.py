"""Servers and raw-socket helpers for the Redis-protocol tests.

A *target* is the server under test on a Redis port:

  redis   a real redis-server (Debian's 7.0) started here on a free port
          (its log build/redis_ref_P.log is removed at stop unless
          REDIS_KEEP_LOGS is set):
          redis-server --port P --save '' --appendonly no --daemonize no
          plus --bind 127.0.0.1 (nothing outside the machine reaches it),
          --databases 1 (Kraken has one database: SELECT 1 is an error on
          both) and --requirepass when a password is asked for.
  kraken  bin/kraken run -noshell -kraken tcp_server_port P1 -kraken redis_port P2
          (test/kraken_server.py's Server, which this wraps), plus
          -kraken redis_password '"..."' when a password is asked for.

The target comes from the environment variable REDIS_TARGET (default redis),
or from a `--target NAME` argument that take_target_arg() removes from
sys.argv before unittest sees it.

Run as a program it starts one target and prints one JSON line with its
ports, then holds it until its standard input closes; the Node.js tests use
that so that both languages start servers the same way:

    python3 test/redis_targets.py serve --target kraken [--password P]
    -> {"target": "kraken", "redis_port": 40123, "kraken_port": 40121, "log_path": "..."}

Only the standard library."""
import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kraken_server import ROOT, Server, free_port  # noqa: E402

HOST = "127.0.0.1"
TARGETS = ("redis", "kraken")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")


def take_target_arg(argv=None):
    """The target named by `--target NAME` in argv (removed from it) or by
    REDIS_TARGET, default redis; also exported as REDIS_TARGET."""
    argv = sys.argv if argv is None else argv
    target = os.environ.get("REDIS_TARGET", "redis")
    if "--target" in argv:
        i = argv.index("--target")
        target = argv[i + 1]
        del argv[i:i + 2]
    if target not in TARGETS:
        raise SystemExit("unknown target %r (expected one of %s)" % (target, ", ".join(TARGETS)))
    os.environ["REDIS_TARGET"] = target
    return target


def wait_port(port, proc, timeout=30.0, what="server"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening on %d" % (what, proc.returncode, port))
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on port %d within %.0f s" % (what, port, timeout))


class RedisServer:
    """A real redis-server on a free port (stopped by stop())."""
    name = "redis"
    kraken_port = None

    def __init__(self, password=None, extra_args=()):
        self.password = password
        self.redis_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis_ref_")
        os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
        self.log_path = os.path.join(ROOT, "build", "redis_ref_%d.log" % self.redis_port)
        args = [REDIS_SERVER, "--port", str(self.redis_port), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--bind", HOST, "--databases", "1", "--dir", self.dir,
                "--logfile", ""]
        if password is not None:
            args += ["--requirepass", password]
        args += list(extra_args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)
        try:
            wait_port(self.redis_port, self.proc, what="redis-server")
        except Exception:
            self.stop()
            raise

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if not os.environ.get("REDIS_KEEP_LOGS"):
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


class KrakenRedisServer(Server):
    """test/kraken_server.py's Server with the Redis port on (a free port,
    .redis_port) and optionally redis_password; .kraken_port is the Kraken
    protocol port.  Extra Kraken options as (name, value) pairs."""
    name = "kraken"

    def __init__(self, *kraken_opts, password=None, **kw):
        self.password = password
        self.redis_port = free_port()
        opts = [("redis_port", str(self.redis_port))]
        if password is not None:
            opts.append(("redis_password", '"%s"' % password))
        super().__init__(*(opts + list(kraken_opts)), **kw)
        self.kraken_port = self.port
        atexit.register(self.stop)
        try:
            wait_port(self.redis_port, self.proc, timeout=15,
                      what="kraken (redis_port; an engine without the Redis protocol?)")
        except Exception:
            self.stop()
            raise

    def stop(self):
        if not self.log.closed:
            super().stop()

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def start(target, password=None, kraken_opts=(), redis_args=()):
    if target == "redis":
        return RedisServer(password=password, extra_args=redis_args)
    if target == "kraken":
        return KrakenRedisServer(*kraken_opts, password=password)
    raise ValueError(target)


# ---- RESP frames ----

class RespError(Exception):
    pass


_LINE_TYPES = b"+-:_,#("     # one line, no payload length
_BLOB_TYPES = b"$=!"         # length + payload
_AGG_TYPES = b"*~>"          # count + elements
_MAP_TYPES = b"%|"           # count + key/value pairs


def parse_frame(buf, i=0):
    """(value, end) of the RESP2/RESP3 frame at buf[i:], or None if it is
    incomplete.  value is (type byte, payload): a bytes line for + - : _ , # (,
    bytes or None for $ = !, a list of values (or None) for * ~ >, a list of
    (key, value) pairs for % |.  Raises RespError on bytes that are no RESP."""
    nl = buf.find(b"\r\n", i)
    if nl < 0:
        return None
    if i >= len(buf):
        return None
    t = buf[i:i + 1]
    line = buf[i + 1:nl]
    j = nl + 2
    if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return (t, line), j
    try:
        n = int(line)
    except ValueError:
        raise RespError("bad length %r" % line)
    if t in (b"$", b"=", b"!"):
        if n < 0:
            return (t, None), j
        if len(buf) < j + n + 2:
            return None
        if buf[j + n:j + n + 2] != b"\r\n":
            raise RespError("blob not followed by CRLF")
        return (t, buf[j:j + n]), j + n + 2
    if t in (b"*", b"~", b">", b"%", b"|"):
        if n < 0:
            return (t, None), j
        count = n * 2 if t in (b"%", b"|") else n
        items = []
        for _ in range(count):
            r = parse_frame(buf, j)
            if r is None:
                return None
            v, j = r
            items.append(v)
        if t in (b"%", b"|"):
            items = [(items[k], items[k + 1]) for k in range(0, len(items), 2)]
        return (t, items), j
    raise RespError("unknown type byte %r" % t)


def encode(value):
    """The canonical bytes of a parse_frame value (inverse of parse_frame)."""
    t, v = value
    if t in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return t + v + b"\r\n"
    if t in (b"$", b"=", b"!"):
        if v is None:
            return t + b"-1\r\n"
        return t + b"%d\r\n" % len(v) + v + b"\r\n"
    if v is None:
        return t + b"-1\r\n"
    if t in (b"%", b"|"):
        return t + b"%d\r\n" % len(v) + b"".join(encode(k) + encode(x) for k, x in v)
    return t + b"%d\r\n" % len(v) + b"".join(encode(x) for x in v)


def split_frames(buf):
    """(list of values, leftover bytes that are no complete frame)."""
    out, i = [], 0
    while i < len(buf):
        r = parse_frame(buf, i)
        if r is None:
            break
        v, i = r
        out.append(v)
    return out, buf[i:]


def cmd(*args):
    """A RESP array of bulk strings (args as bytes or str)."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class Conn:
    """A raw TCP client: send bytes, read frames with a deadline."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def _recv(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            self.closed = True
            return False
        self.buf += d
        return True

    def read_frames(self, n, timeout=5.0):
        """Exactly n frames (values); raises AssertionError on a deadline or close."""
        deadline = time.time() + timeout
        while True:
            frames, rest = split_frames(self.buf)
            if len(frames) >= n:
                # hand back the first n, keep the rest buffered
                i = 0
                for _ in range(n):
                    _, i = parse_frame(self.buf, i)
                self.buf = self.buf[i:]
                return frames[:n]
            if self.closed or time.time() >= deadline:
                raise AssertionError("wanted %d frames, have %r (closed=%s)" % (n, self.buf[:300], self.closed))
            self._recv(deadline - time.time())

    def read_frame(self, timeout=5.0):
        return self.read_frames(1, timeout)[0]

    def call(self, *args, timeout=5.0):
        self.send(cmd(*args))
        return self.read_frame(timeout)

    def quiet(self, settle=0.2):
        """True when nothing arrives for settle seconds (and nothing is buffered)."""
        if self.buf:
            return False
        return not self._recv(settle) and not self.buf

    def wait_closed(self, timeout=5.0):
        deadline = time.time() + timeout
        while not self.closed and time.time() < deadline:
            self._recv(deadline - time.time())
        return self.closed

    def close(self):
        self.sock.close()


def _serve(argv):
    target = take_target_arg(argv)
    password = None
    if "--password" in argv:
        password = argv[argv.index("--password") + 1]
    srv = start(target, password=password)
    try:
        sys.stdout.write(json.dumps({"target": target, "redis_port": srv.redis_port,
                                     "kraken_port": srv.kraken_port,
                                     "log_path": srv.log_path}) + "\n")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        srv.stop()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        _serve(sys.argv[2:])
    else:
        raise SystemExit(__doc__)
