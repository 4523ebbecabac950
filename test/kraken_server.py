"""Starts a real Kraken server (bin/kraken run -noshell) on a free port for
black-box tests, and stops it (the whole process group) afterwards."""
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
    def __init__(self, *kraken_opts, engine=None):
        self.port = free_port()
        args = [os.path.join(ROOT, "bin", "kraken"), "run", "-noshell",
                "-kraken", "tcp_server_port", str(self.port)]
        for name, value in kraken_opts:
            args += ["-kraken", name, value]
        env = dict(os.environ, KRAKEN_NODE_NAME="kraken_pytest_%d_%d" % (os.getpid(), self.port))
        engine = engine or os.environ.get("KRAKEN_ENGINE")
        if engine:
            args += ["-kraken", "engine_executable", '"%s"' % engine]
        self.log = open(os.path.join(ROOT, "build", "pytest_server_%d.log" % self.port), "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
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
