"""Leak check: a scripted session against the engine under valgrind.

Clients subscribe, publish (small and large payloads, an entry of 100
topics held in part), unsubscribe, use register and retro_subscribe, drain
their queues, and disconnect, some with messages still queued; then the
engine is stopped with SIGTERM and valgrind must report no error and no
leaked block."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setc(cmd, data):
    return b"set %s 0 0 %d\r\n%s\r\n" % (cmd, len(data), data)


def entry(topics, payload):
    return b"MESSAGE %s %d\r\n%s\r\n" % (b" ".join(topics), len(payload), payload)


def expect(sock, want):
    sock.settimeout(20)
    got = b""
    while len(got) < len(want):
        d = sock.recv(65536)
        if not d:
            break
        got += d
    assert got == want, (got[:200], want[:200])


def main():
    log = os.path.join(ROOT, "build", "valgrind.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    proc = subprocess.Popen(
        ["valgrind", "--leak-check=full", "--show-leak-kinds=all",
         "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=99",
         "--log-file=" + log, os.path.join(ROOT, "priv", "kraken_engine"), "--standalone",
         "--tcp_server_port", "0", "--listen_ip", "127.0.0.1",
         "--messages_stored_per_router_shard", "5"],
        stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    port = int(re.match(r"listening (\d+)", line).group(1))
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    a, b, c, d = conns
    many = [b"m%d" % i for i in range(100)]
    a.sendall(setc(b"subscribe", b"t1 t2 " + b" ".join(many[:10])))
    expect(a, b"STORED\r\n")
    c.sendall(setc(b"subscribe", b"t1"))
    expect(c, b"STORED\r\n")
    d.sendall(setc(b"register", b""))
    expect(d, b"STORED\r\n")
    big = os.urandom(100000)
    for i in range(20):
        b.sendall(setc(b"publish", entry([b"t1", b"t2"], b"small %d" % i) +
                       entry([b"t2"], big) + entry(many, b"wide")))
        expect(b, b"STORED\r\n")
    a.sendall(b"get messages\r\n")
    a.settimeout(20)
    got = b""
    while not got.endswith(b"END\r\n"):
        got += a.recv(1 << 20)
    assert got.count(b"MESSAGE") == 60, got.count(b"MESSAGE")
    d.sendall(setc(b"subscribe", b"t2 m5"))
    expect(d, b"NOT_FOUND\r\n")
    d.sendall(setc(b"retro_subscribe", b"%d\r\nt1" % (time.time() - 3600)))
    expect(d, b"NOT_FOUND\r\n")
    a.sendall(setc(b"unsubscribe", b"t1 t2 nosuch"))
    expect(a, b"STORED\r\n")
    b.sendall(b"bogus\r\n")
    expect(b, b"ERROR\r\n")
    for s in conns:  # c and d leave with queued messages
        s.close()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(60)
    report = open(log).read()
    summary = [l for l in report.splitlines() if "ERROR SUMMARY" in l or "lost:" in l
               or "in use at exit" in l]
    print("\n".join(summary))
    ok = rc == 0 and "ERROR SUMMARY: 0 errors" in report and (
        "All heap blocks were freed" in report or "definitely lost: 0 bytes" in report)
    print("valgrind: %d passed, %d failed" % (ok, not ok))
    if not ok:
        print(report[-4000:])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
