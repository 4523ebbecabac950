"""Network namespaces for the partition test (test/partition_test.py): one
namespace per node, each with its own address on a bridge, and this
process's namespace on the same bridge so that the test's clients reach
every node; partitions are nftables rules that silently drop one node's
packets at another (both ways: a rule in each of the two namespaces; one
table per pair, so that several cuts are healed one by one).

    hub namespace <tag>h: bridge br0
      |-- veth --> <tag><node> namespaces: eth0 = 10.213.X.<2..>/24, lo up
      `-- veth --> this namespace: <tag>t = 10.213.X.1/24

Everything is named after <tag> = "kp" + this process's pid, so that two runs
never meet; Lab.close() removes it all (the nodes' processes, the
namespaces, the veth, the rules go with their namespace), and Lab() first
removes what an earlier run killed before its clean-up left behind.

Needs root and the `ip` (iproute2) and `nft` (nftables) commands; Lab.check()
says clearly which is missing."""
import os
import re
import shutil
import subprocess
import time

SUBNET_BASE = "10.213"


class LabError(Exception):
    pass


def sh(*args, check=True, ns=None, timeout=30):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    out = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise LabError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, out.strip()))
    return out


def check():
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, nftables); run as root (CI does)"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if not shutil.which(tool):
            return "needs the `%s` command (Debian package %s; `make deps` installs it)" % (
                tool, pkg)
    return None


def _running_test(pid):
    """Whether pid is a live partition test (not a zombie, not a reused pid)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return b"partition_test" in f.read()
    except (OSError, IndexError):
        return False


def _stale():
    """Namespaces of earlier runs whose process is gone."""
    out = sh("ip", "netns", "list", check=False)
    for line in out.splitlines():
        m = re.match(r"(kp(\d+)[a-z]\w*)", line)
        if m and not _running_test(m.group(2)):
            yield m.group(1)


class Lab:
    def __init__(self, nodes):
        self.tag = "kp%d" % os.getpid()
        self.nodes = list(nodes)
        self.made = []     # namespaces made, for close()
        self.host_if = None
        for ns in _stale():
            _remove_ns(ns)
        self.subnet = self._free_subnet()
        self.addr = {n: "%s.%d" % (self.subnet, i + 2) for i, n in enumerate(self.nodes)}
        self.ns = {n: self.tag + n for n in self.nodes}

    def _free_subnet(self):
        used = sh("ip", "-o", "addr", check=False) + sh("ip", "route", check=False)
        for i in range(200):
            x = (os.getpid() + i) % 200 + 20
            s = "%s.%d" % (SUBNET_BASE, x)
            if s + "." not in used:
                return s
        raise LabError("no free %s.X.0/24 subnet" % SUBNET_BASE)

    def up(self):
        hub = self.tag + "h"
        self._add_ns(hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for n in self.nodes:
            ns = self.ns[n]
            self._add_ns(ns)
            sh("ip", "-n", hub, "link", "add", "v" + n, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "-n", hub, "link", "set", "v" + n, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", self.addr[n] + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        # This namespace on the bridge: the test's clients.
        self.host_if = self.tag + "t"
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "vt", "netns", hub)
        sh("ip", "-n", hub, "link", "set", "vt", "master", "br0", "up")
        sh("ip", "addr", "add", self.subnet + ".1/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")

    def _add_ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    def cut(self, a, b):
        """Drops every packet between nodes a and b, both ways, silently (an
        input rule in each namespace: the senders see nothing).  Returns the
        time a's rule was in place (a stops hearing b from then on)."""
        first = None
        for x, y in ((a, b), (b, a)):
            rules = ("table inet kp_cut_%s {\n chain input {\n" % y +
                     "  type filter hook input priority 0; policy accept;\n"
                     "  ip saddr %s drop\n }\n}\n" % self.addr[y])
            r = subprocess.run(["ip", "netns", "exec", self.ns[x], "nft", "-f", "-"],
                               input=rules.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            if r.returncode != 0:
                raise LabError("nft in %s: %s" % (self.ns[x], r.stdout.decode().strip()))
            first = first or time.time()
        return first

    def heal(self, a, b):
        for x, y in ((a, b), (b, a)):
            sh("nft", "delete", "table", "inet", "kp_cut_" + y, ns=self.ns[x], check=False)

    def close(self):
        if self.host_if:
            sh("ip", "link", "del", self.host_if, check=False)
            self.host_if = None
        for ns in reversed(self.made):
            _remove_ns(ns)
        self.made = []


def _remove_ns(ns):
    """Kills what runs in the namespace (nodes, engines, epmd), then deletes
    it: its interfaces and rules go with it."""
    pids = sh("ip", "netns", "pids", ns, check=False).split()
    for p in pids:
        if p.isdigit():
            try:
                os.kill(int(p), 9)
            except OSError:
                pass
    sh("ip", "netns", "del", ns, check=False)
