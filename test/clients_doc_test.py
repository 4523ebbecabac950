"""Runs the examples of docs/clients.md against a real server: the
```python blocks in order as one program (with Debian's python3 and its
pymemcache), each ```javascript block on its own with node and this
project's node_modules (make installs them from package-lock.json). The
server's port is in KRAKEN_PORT. Every example asserts what it shows."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kraken_server import ROOT, Server  # noqa: E402

DOC = os.path.join(ROOT, "docs", "clients.md")


def code_blocks(lang):
    with open(DOC) as f:
        text = f.read()
    return re.findall(r"^```%s\n(.*?)^```$" % lang, text, re.S | re.M)


class ClientsDocTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.env = dict(os.environ, KRAKEN_PORT=str(cls.server.port),
                       NODE_PATH=os.path.join(ROOT, "node_modules"))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def run_file(self, argv, source, suffix):
        with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as f:
            f.write(source)
        self.addCleanup(os.unlink, f.name)
        p = subprocess.run(argv + [f.name], env=self.env, cwd=ROOT, capture_output=True,
                           timeout=60)
        sys.stdout.write(p.stdout.decode(errors="replace"))
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return p.stdout.decode(errors="replace")

    def test_python(self):
        blocks = code_blocks("python")
        self.assertEqual(len(blocks), 2)
        out = self.run_file(["/usr/bin/python3"], "\n".join(blocks), ".py")
        self.assertIn("refused: b'bad publish entry'", out)
        self.assertIn("reload needed: b'NOT_FOUND'", out)

    def test_javascript(self):
        blocks = code_blocks("javascript")
        self.assertEqual(len(blocks), 2)
        outs = [self.run_file(["node"], b, ".js") for b in blocks]
        self.assertIn("publish refused: bad publish entry", outs[0])
        self.assertIn('project:42,user:7: "task 2\\r\\nassigned"', outs[1])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("clients doc: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
