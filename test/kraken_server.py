"""Starts a real Kraken server (bin/kraken run -noshell) on a free port for
black-box tests, and stops it (the whole process group) afterwards.

Server(("name", "value"), ..., engine=None, preexec_fn=None): preexec_fn runs
in the child before exec (e.g. to lower RLIMIT_NOFILE for the whole node).
server.log_path is the node's console log; server.engine_pid() finds the OS
pid of its C engine through /proc; rss_kb() and cpu_secs() read /proc."""
import os
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *kraken_opts, engine=None, preexec_fn=None):
        self.port = free_port()
        args = [os.path.join(ROOT, "bin", "kraken"), "run", "-noshell",
                "-kraken", "tcp_server_port", str(self.port)]
        for name, value in kraken_opts:
            args += ["-kraken", name, value]
        env = dict(os.environ, KRAKEN_NODE_NAME="kraken_pytest_%d_%d" % (os.getpid(), self.port))
        engine = engine or os.environ.get("KRAKEN_ENGINE")
        if engine:
            args += ["-kraken", "engine_executable", '"%s"' % engine]
        os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
        self.log_path = os.path.join(ROOT, "build", "pytest_server_%d.log" % self.port)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=preexec_fn)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start listening on %d" % self.port)

    def engine_pid(self, timeout=10, exclude=()):
        """OS pid of the engine (a descendant of this server whose executable is
        kraken_engine or kraken_engine_asan), waiting up to timeout seconds;
        pids in exclude are skipped (to wait for a restarted engine)."""
        deadline = time.time() + timeout
        while True:
            pids = [p for p in engine_pids(self.proc.pid) if p not in exclude]
            if pids:
                return pids[0]
            if time.time() >= deadline:
                raise RuntimeError("no kraken engine process under pid %d" % self.proc.pid)
            time.sleep(0.05)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


ENGINE_NAMES = ("kraken_engine", "kraken_engine_asan")


def _ppid(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def engine_pids(root_pid):
    """Pids of the engine processes descended from root_pid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
        except OSError:
            continue
        if exe.endswith(" (deleted)"):
            exe = exe[:-len(" (deleted)")]
        if os.path.basename(exe) not in ENGINE_NAMES:
            continue
        p = pid
        try:
            for _ in range(64):
                if p == root_pid:
                    found.append(pid)
                    break
                if p <= 1:
                    break
                p = _ppid(p)
        except OSError:
            continue
    return sorted(found)


def rss_kb(pid):
    """VmRSS of pid in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def cpu_secs(pid):
    """utime + stime of pid in seconds."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
