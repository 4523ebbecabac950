#!/usr/bin/env python3
"""make install into a temporary DESTDIR, then the installed copy run as the
systemd unit runs it (issue 11, part 4), without systemd:

- the tree: bin/kraken, lib/kraken/{ebin,priv}, the unit with the PREFIX's
  paths, docs and examples;
- the unit's ExecStart command line (Type=forking: it returns once the node
  listens), with the bin path under DESTDIR, the pid file in a temporary
  directory instead of /run/kraken and a free port (-kraken tcp_server_port 0);
- the node runs the installed code and engine (not the source tree's), its pid
  is in the pid file, bin/kraken status exits 0, and a publish with the
  installed bin/kraken reaches a subscriber that polls;
- the unit's ExecStop stops it and the pid file is gone.
"""
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "/usr/local"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def unit_lines(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, v)
    return out


def recv_until(sock, end):
    data = b""
    deadline = time.time() + 10
    while not data.endswith(end):
        check(time.time() < deadline, "no %r in %r" % (end, data))
        chunk = sock.recv(65536)
        check(chunk, "connection closed after %r" % data)
        data += chunk
    return data


def main():
    tmp = tempfile.mkdtemp(prefix="kraken_install_")
    dest = os.path.join(tmp, "dest")
    node = "kraken_install_%d" % os.getpid()
    env = dict(os.environ)
    env.pop("KRAKEN_EBIN", None)
    env["KRAKEN_NODE_NAME"] = node
    env["KRAKEN_LOG_DIR"] = os.path.join(tmp, "log")
    stop_cmd = None
    try:
        # 1. make install
        subprocess.run(["make", "-s", "-C", ROOT, "install", "PREFIX=" + PREFIX,
                        "DESTDIR=" + dest], check=True, stdout=subprocess.DEVNULL)
        root = dest + PREFIX
        for f in ["bin/kraken", "lib/kraken/ebin/kraken.app", "lib/kraken/ebin/kraken_ctl.beam",
                  "lib/kraken/priv/kraken_engine", "lib/kraken/priv/kraken_options.eterm",
                  "lib/systemd/system/kraken.service", "share/doc/kraken/README.md",
                  "share/doc/kraken/operations.md", "share/doc/kraken/examples/kraken.config",
                  "share/doc/kraken/examples/kraken.logrotate",
                  "share/doc/kraken/examples/kraken.service"]:
            check(os.path.isfile(os.path.join(root, f)), "not installed: " + f)
        check(os.access(os.path.join(root, "bin/kraken"), os.X_OK), "bin/kraken not executable")
        check(os.access(os.path.join(root, "lib/kraken/priv/kraken_engine"), os.X_OK),
              "engine not executable")

        # 2. the unit's command lines
        unit = unit_lines(os.path.join(root, "lib/systemd/system/kraken.service"))
        check(unit.get("Type") == "forking", "Type=forking")
        check(unit.get("PIDFile") == "/run/kraken/kraken.pid", "PIDFile")
        start = shlex.split(unit["ExecStart"])
        stop = shlex.split(unit["ExecStop"])
        check(start[:2] == [PREFIX + "/bin/kraken", "start"], "ExecStart: %r" % start)
        check(stop == [PREFIX + "/bin/kraken", "stop"], "ExecStop: %r" % stop)
        pid_file = os.path.join(tmp, "run", "kraken.pid")
        os.makedirs(os.path.dirname(pid_file))
        start = [dest + start[0]] + [
            '"%s"' % pid_file if a == '"/run/kraken/kraken.pid"' else a for a in start[1:]]
        check('"%s"' % pid_file in start, "pid_file in ExecStart: %r" % start)
        start += ["-kraken", "tcp_server_port", "0", "-kraken", "listen_ip", '"127.0.0.1"']
        stop_cmd = [dest + stop[0]] + stop[1:]
        # From another directory: nothing found through the working directory.
        r = subprocess.run(start, env=env, cwd=tmp, capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "start: %d %s %s" % (r.returncode, r.stdout, r.stderr))
        m = re.search(r"listening on port (\d+) \(os pid (\d+)\)", r.stdout)
        check(m, "start output: " + r.stdout)
        port, os_pid = int(m.group(1)), int(m.group(2))

        # 3. the pid file (what systemd reads), the installed code and engine
        check(open(pid_file).read() == "%d\n" % os_pid, "pid file")
        cmdline = open("/proc/%d/cmdline" % os_pid, "rb").read().split(b"\0")
        check((root + "/lib/kraken/ebin").encode() in cmdline,
              "node runs the installed code: %r" % cmdline)
        kraken = os.path.join(root, "bin/kraken")
        r = subprocess.run([kraken, "status"], env=env, capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 0 and "is running" in r.stdout, "status: " + r.stdout + r.stderr)
        m = re.search(r"^engine_os_pid (\d+)$", r.stdout, re.M)
        check(m, "engine_os_pid in status: " + r.stdout)
        exe = os.readlink("/proc/%s/exe" % m.group(1))
        check(exe == root + "/lib/kraken/priv/kraken_engine",
              "the installed engine runs: %r" % exe)

        # 4. publish with the installed bin/kraken, poll with a raw client
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"set subscribe 0 0 13\r\ninstall_topic\r\n")
            recv_until(s, b"STORED\r\n")
            r = subprocess.run([kraken, "publish", "install_topic", "-m", "installed"],
                               env=env, capture_output=True, text=True, timeout=60)
            check(r.returncode == 0 and r.stdout == "", "publish: %r" % (r,))
            s.sendall(b"get messages\r\n")
            got = recv_until(s, b"END\r\n")
            check(b"MESSAGE install_topic 9\r\ninstalled\r\n" in got, "poll: %r" % got)

        # 5. ExecStop
        r = subprocess.run(stop_cmd, env=env, capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "stop: %s %s" % (r.stdout, r.stderr))
        stop_cmd = None
        check(not os.path.exists(pid_file), "pid file removed at stop")
        r = subprocess.run([kraken, "status"], env=env, capture_output=True, timeout=60)
        check(r.returncode == 1, "status after stop: %d" % r.returncode)
        print("install_test: ok (installed into %s, served on port %d, stopped)" % (dest, port))
    finally:
        if stop_cmd:
            subprocess.run(stop_cmd, env=env, capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("install_test: FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
