"""Differential test of the Redis port: the same raw byte sequences go to a
real redis-server 7.0 (the reference, always started here) and to the
target (a second redis-server, or Kraken's redis_port), and the replies are
compared byte for byte.

    REDIS_TARGET=redis  /usr/bin/python3 test/redis_diff_test.py   # proves the cases
    REDIS_TARGET=kraken /usr/bin/python3 test/redis_diff_test.py   # tests Kraken
    REDIS_DIFF_CASE=psubscribe /usr/bin/python3 test/redis_diff_test.py --target kraken   # some cases

A case is one line of data: (name, [step, ...]).  A step is the bytes one
client writes at once: `b"..."` is written by client "a"; `("b", b"...")` by
client "b" (clients connect on first use, in the order they appear); a step
may end with flags: `("a", b"...", SORT)`.  After each step every client of
the case reads: the reference until it has been quiet for SETTLE seconds
(or closed), the target until it has as many complete frames as the
reference had (and closed if the reference did) and then SETTLE_EXTRA more
seconds for anything extra, never past DEADLINE.  Then, per client, the
frames (after the normalisations below), any incomplete tail, and whether
the connection closed must be equal.  Every frame must also be canonical
RESP (re-encoding it gives back its bytes).

Normalisations, the only differences allowed (each applied to both sides):
  HELLO (always)  in a HELLO reply (RESP2 array or RESP3 map whose keys are
                  server version proto id mode role modules), the values of
                  `server`, `version` and `id` become <server>, <version>,
                  <id>: the product name, its version and the connection's
                  id are the server's own.  proto, mode ("standalone"), role
                  ("master") and modules (empty) are compared.
  PSORT (flag)    each run of consecutive pmessage frames of that step (on
                  every client of the case) is sorted: when one publish matches several patterns of one
                  client, redis-server 7.0 walks its pattern hash table
                  (seeded per process), so the order of those pmessages is
                  no contract.
  ID (flag)       integer replies of that step become :<id> (after checking
                  they are > 0): CLIENT ID values depend on how many
                  connections the server has seen.
  SORT (flag)     the elements of array replies of that step are sorted:
                  PUBSUB CHANNELS / SHARDCHANNELS list channels in hash-table
                  order, which is no contract.  Only used on steps whose
                  replies are such lists.
  UNSUB_ALL (flag) within each run of consecutive unsubscribe /
                  punsubscribe / sunsubscribe frames of that step, the names
                  are sorted while the counts stay in place: an UNSUBSCRIBE
                  (or SUNSUBSCRIBE) without arguments walks Redis's hash
                  table, so the order of the names is no contract; the
                  counts still go down one by one.
  UNIMPL (flag)   commands Kraken does not implement at all (GET, SET, DEL,
                  INCR, ...): against Kraken each reply of that step must be
                  an `-ERR unknown command '...'` error instead of Redis's
                  reply; against a redis-server target it is compared as usual.

Not compared at all (excluded): INFO and COMMAND (Kraken answers only what
redis-cli and the client libraries need, not Redis's text), CLIENT LIST /
INFO / KILL and every other CLIENT subcommand but ID / SETNAME / GETNAME,
every data-type command (listed as UNIMPL cases only), MULTI/EXEC, ACL.
Redis limits that Kraken need not share are not probed: bulk lengths
between Kraken's max_request_bytes and Redis's proto-max-bulk-len (512 MB).

The reference redis-server runs with --databases 1 (so SELECT 1 is an
error, as on Kraken, which has one database)."""
import concurrent.futures
import os
import queue
import select
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import redis_targets as rt  # noqa: E402
from redis_targets import cmd as R  # noqa: E402

TARGET = rt.take_target_arg()
SETTLE = float(os.environ.get("REDIS_DIFF_SETTLE", "0.12"))
SETTLE_EXTRA = 0.05
DEADLINE = 5.0                                  # reference: quiet within this
TARGET_DEADLINE = float(os.environ.get("REDIS_DIFF_DEADLINE", "2.0"))  # target: as many frames
PASSWORD = "s3cret"

SORT, UNSUB_ALL, PSORT, ID, UNIMPL = "SORT", "UNSUB_ALL", "PSORT", "ID", "UNIMPL"

SUBMODE_ERR = (b"only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed"
               b" in this context")


def pub(ch, msg, client="b"):
    return (client, R("PUBLISH", ch, msg))


def spub(ch, msg, client="b"):
    return (client, R("SPUBLISH", ch, msg))


# ---- the cases (name, [steps]) ----

CASES = [
    # PING / ECHO / QUIT / SELECT
    ("ping inline", [b"PING\r\n"]),
    ("ping lower case, bare LF", [b"ping\n"]),
    ("ping resp", [R("PING")]),
    ("ping with arg", [R("PING", "hello world")]),
    ("ping with empty arg", [R("PING", "")]),
    ("ping two args", [R("PING", "a", "b")]),
    ("echo", [R("ECHO", "x y")]),
    ("echo empty", [R("ECHO", "")]),
    ("echo binary", [R("ECHO", b"\x00\r\n\xff")]),
    ("echo no arg", [R("ECHO")]),
    ("echo two args", [R("ECHO", "a", "b")]),
    ("echo 100 KB", [R("ECHO", b"x" * 100000)]),
    ("quit", [b"QUIT\r\n"]),
    ("quit with arg", [R("QUIT", "now")]),
    ("quit stops the pipeline", [b"PING\r\nQUIT\r\nPING\r\n"]),
    ("select 0", [b"SELECT 0\r\n"]),
    ("select 1", [b"SELECT 1\r\n"]),
    ("select -1", [b"SELECT -1\r\n"]),
    ("select x", [b"SELECT x\r\n"]),
    ("select no arg", [b"SELECT\r\n"]),
    ("select two args", [b"SELECT 0 1\r\n"]),
    # CLIENT
    ("client id", [(b"a", b"CLIENT ID\r\n", ID)]),
    ("client id twice same", [(b"a", b"CLIENT ID\r\nCLIENT ID\r\n", ID)]),
    ("client id extra arg", [b"CLIENT ID x\r\n"]),
    ("client getname unset", [b"CLIENT GETNAME\r\n"]),
    ("client setname getname", [b"CLIENT SETNAME worker-1\r\n", b"CLIENT GETNAME\r\n"]),
    ("client setname lower case", [b"client setname w\r\nclient getname\r\n"]),
    ("client setname empty clears", [b"CLIENT SETNAME n\r\n", R("CLIENT", "SETNAME", ""),
                                     b"CLIENT GETNAME\r\n"]),
    ("client setname space", [R("CLIENT", "SETNAME", "a b")]),
    ("client setname newline", [R("CLIENT", "SETNAME", "a\nb")]),
    ("client setname high byte", [R("CLIENT", "SETNAME", b"ab\xc3")]),
    ("client setname no arg", [b"CLIENT SETNAME\r\n"]),
    ("client getname extra arg", [b"CLIENT GETNAME x\r\n"]),
    ("client no subcommand", [b"CLIENT\r\n"]),
    ("client unknown subcommand", [b"CLIENT FOO bar\r\n"]),
    # unknown commands, arity
    ("unknown command", [b"foo a b\r\n"]),
    ("unknown command no args", [R("FOO")]),
    ("unknown command quoted name", [b'"foo bar" x\r\n']),
    ("unknown command long args", [R("foo", "x" * 200, "y")]),
    ("unknown command many args", [R("foo", *["arg%d" % i for i in range(40)])]),
    ("unknown command long name", [R("f" * 300)]),
    ("unknown command newline in arg", [R("foo", "a\r\nb")]),
    ("unknown command keeps connection", [b"foo\r\nPING\r\n"]),
    ("subscribe no args", [b"SUBSCRIBE\r\n"]),
    ("psubscribe no args", [b"PSUBSCRIBE\r\n"]),
    ("ssubscribe no args", [b"SSUBSCRIBE\r\n"]),
    ("publish one arg", [b"PUBLISH a\r\n"]),
    ("publish three args", [b"PUBLISH a b c\r\n"]),
    ("spublish one arg", [b"SPUBLISH a\r\n"]),
    ("pubsub no subcommand", [b"PUBSUB\r\n"]),
    ("command name mixed case", [b"SuBsCrIbE a\r\n"]),
    ("empty command name", [b"*1\r\n$0\r\n\r\n", b"*2\r\n$0\r\n\r\n$1\r\nx\r\n"]),
    ("unknown command resp3 subscribed", [b"HELLO 3\r\nSUBSCRIBE a\r\n", b"foo bar\r\n"]),
    # AUTH / HELLO without a password configured
    ("auth no password configured", [b"AUTH x\r\n"]),
    ("auth default user any password", [b"AUTH default x\r\n"]),
    ("auth unknown user", [b"AUTH someone x\r\n"]),
    ("auth no args", [b"AUTH\r\n"]),
    ("auth three args", [b"AUTH a b c\r\n"]),
    ("hello no args", [b"HELLO\r\n"]),
    ("hello 2", [b"HELLO 2\r\n"]),
    ("hello 3", [b"HELLO 3\r\n"]),
    ("hello 3 then 2", [b"HELLO 3\r\n", b"HELLO 2\r\n", b"PING\r\n"]),
    ("hello 1", [b"HELLO 1\r\n"]),
    ("hello 4", [b"HELLO 4\r\n"]),
    ("hello -1", [b"HELLO -1\r\n"]),
    ("hello x", [b"HELLO x\r\n"]),
    ("hello 3 setname", [b"HELLO 3 SETNAME foo\r\n", b"CLIENT GETNAME\r\n"]),
    ("hello 2 setname lower case", [b"hello 2 setname foo\r\n", b"CLIENT GETNAME\r\n"]),
    ("hello setname space", [R("HELLO", "3", "SETNAME", "a b"), b"CLIENT GETNAME\r\n"]),
    ("hello setname missing", [b"HELLO 3 SETNAME\r\n"]),
    ("hello auth default", [b"HELLO 3 AUTH default whatever SETNAME n\r\n", b"CLIENT GETNAME\r\n"]),
    ("hello auth missing pass", [b"HELLO 3 AUTH default\r\n"]),
    ("hello unknown option", [b"HELLO 3 FOO\r\n"]),
    ("hello 3 getname unset", [b"HELLO 3\r\n", b"CLIENT GETNAME\r\n"]),
    ("hello 3 client id", [b"HELLO 3\r\n", (b"a", b"CLIENT ID\r\n", ID)]),
    ("hello 3 errors", [b"HELLO 3\r\n", b"foo x\r\n", b"ECHO\r\n", b"SELECT 1\r\n"]),
    # SUBSCRIBE / UNSUBSCRIBE (RESP2)
    ("subscribe one", [b"SUBSCRIBE a\r\n"]),
    ("subscribe several", [b"SUBSCRIBE a b c\r\n"]),
    ("subscribe duplicates", [b"SUBSCRIBE a b a\r\n", b"SUBSCRIBE b\r\n"]),
    ("subscribe resp", [R("SUBSCRIBE", "x", "y")]),
    ("subscribe binary names", [R("SUBSCRIBE", b"\x00a b", b"\xff", b"c\r\nd")]),
    ("subscribe empty name", [R("SUBSCRIBE", "")]),
    ("subscribe long name", [R("SUBSCRIBE", "n" * 5000)]),
    ("unsubscribe named", [b"SUBSCRIBE a b c\r\n", b"UNSUBSCRIBE b\r\n", b"UNSUBSCRIBE a c\r\n",
                           b"PING\r\n"]),
    ("unsubscribe not subscribed", [b"SUBSCRIBE a\r\n", b"UNSUBSCRIBE zz a zz\r\n"]),
    ("unsubscribe all", [b"SUBSCRIBE a b c d\r\n", (b"a", b"UNSUBSCRIBE\r\n", UNSUB_ALL),
                         b"PING\r\n"]),
    ("unsubscribe none", [b"UNSUBSCRIBE\r\n"]),
    ("unsubscribe none then ping", [b"UNSUBSCRIBE\r\nPING\r\n"]),
    ("unsubscribe named outside", [b"UNSUBSCRIBE a b\r\n", b"PING\r\n"]),
    ("unsubscribe all twice", [b"SUBSCRIBE a\r\n", b"UNSUBSCRIBE\r\n", b"UNSUBSCRIBE\r\n"]),
    ("subscribed ping", [b"SUBSCRIBE a\r\n", b"PING\r\n"]),
    ("subscribed ping arg", [b"SUBSCRIBE a\r\n", b"PING hello\r\n", R("PING", "")]),
    ("subscribed ping two args", [b"SUBSCRIBE a\r\n", b"PING a b\r\n"]),
    ("subscribed refuses publish", [b"SUBSCRIBE a\r\n", b"PUBLISH a x\r\n"]),
    ("subscribed refuses echo", [b"SUBSCRIBE a\r\n", b"ECHO x\r\n"]),
    ("subscribed refuses hello", [b"SUBSCRIBE a\r\n", b"HELLO 3\r\n", b"HELLO 2\r\n"]),
    ("subscribed refuses client id", [b"SUBSCRIBE a\r\n", b"CLIENT ID\r\n"]),
    ("subscribed refuses client setname", [b"SUBSCRIBE a\r\n", b"CLIENT SETNAME x\r\n"]),
    ("subscribed refuses select", [b"SUBSCRIBE a\r\n", b"SELECT 0\r\n"]),
    ("subscribed refuses auth", [b"SUBSCRIBE a\r\n", b"AUTH x\r\n"]),
    ("subscribed refuses pubsub", [b"SUBSCRIBE a\r\n", b"PUBSUB NUMPAT\r\n",
                                   b"PUBSUB CHANNELS\r\n"]),
    ("subscribed refuses spublish", [b"SUBSCRIBE a\r\n", b"SPUBLISH a x\r\n"]),
    ("subscribed unknown command", [b"SUBSCRIBE a\r\n", b"foo\r\n"]),
    ("subscribed arity before mode", [b"SUBSCRIBE a\r\n", b"PUBLISH a\r\n", b"ECHO\r\n"]),
    ("subscribed allows psubscribe", [b"SUBSCRIBE a\r\n", b"PSUBSCRIBE a*\r\n",
                                      b"SSUBSCRIBE s\r\n", b"PUNSUBSCRIBE\r\n"]),
    ("subscribed reset", [b"SUBSCRIBE a\r\nPSUBSCRIBE b*\r\n", b"RESET\r\n", b"PING\r\n",
                          pub("a", "x"), pub("bb", "x")]),
    ("subscribed quit", [b"SUBSCRIBE a\r\n", b"QUIT\r\n"]),
    ("subscribed quit pipelined", [b"SUBSCRIBE a\r\nQUIT\r\nPING\r\n", pub("a", "x")]),
    ("partial command then close", [b"*2\r\n$4\r\nECHO\r\n$3\r\nab"]),
    ("back to normal after unsubscribe", [b"SUBSCRIBE a\r\n", b"UNSUBSCRIBE a\r\n",
                                          b"PING\r\nECHO e\r\n"]),
    # PSUBSCRIBE / PUNSUBSCRIBE
    ("psubscribe globs", [b"PSUBSCRIBE h*llo h?llo h[a-c]llo h[^x]llo h\\*llo h*llo\r\n"]),
    ("punsubscribe named", [b"PSUBSCRIBE a* b?\r\n", b"PUNSUBSCRIBE b? nope\r\n"]),
    ("punsubscribe all", [b"PSUBSCRIBE a* b? c[d]\r\n", (b"a", b"PUNSUBSCRIBE\r\n", UNSUB_ALL)]),
    ("punsubscribe none", [b"PUNSUBSCRIBE\r\n"]),
    ("punsubscribe named outside", [b"PUNSUBSCRIBE x*\r\n"]),
    ("psubscribe then ping", [b"PSUBSCRIBE x*\r\n", b"PING\r\n"]),
    ("channel and pattern counts", [b"SUBSCRIBE a\r\n", b"PSUBSCRIBE a\r\n", b"SUBSCRIBE b\r\n",
                                    b"UNSUBSCRIBE a\r\n", b"PUNSUBSCRIBE a\r\n",
                                    b"UNSUBSCRIBE b\r\n"]),
    # SSUBSCRIBE / SUNSUBSCRIBE
    ("ssubscribe", [b"SSUBSCRIBE s1 s2 s1\r\n"]),
    ("sunsubscribe named", [b"SSUBSCRIBE s1 s2\r\n", b"SUNSUBSCRIBE s2 zz\r\n"]),
    ("sunsubscribe all", [b"SSUBSCRIBE s1 s2 s3\r\n", (b"a", b"SUNSUBSCRIBE\r\n", UNSUB_ALL)]),
    ("sunsubscribe none", [b"SUNSUBSCRIBE\r\n"]),
    ("shard counts separate", [b"SUBSCRIBE a\r\n", b"SSUBSCRIBE b\r\n", b"PSUBSCRIBE c\r\n",
                               b"UNSUBSCRIBE\r\n", b"SUNSUBSCRIBE\r\n", b"PUNSUBSCRIBE\r\n",
                               b"PING\r\n"]),
    ("ssubscribe only is subscribed mode", [b"SSUBSCRIBE a\r\n", b"PING\r\n", b"ECHO x\r\n"]),
    ("ssubscribe then subscribe", [b"SSUBSCRIBE a b\r\n", b"SUBSCRIBE s\r\n"]),
    # PUBLISH and delivery (several clients)
    ("publish no receivers", [b"PUBLISH nobody x\r\n"]),
    ("spublish no receivers", [b"SPUBLISH nobody x\r\n"]),
    ("publish one receiver", [b"SUBSCRIBE ch\r\n", pub("ch", "hello")]),
    ("publish empty and binary", [b"SUBSCRIBE ch\r\n", pub("ch", ""), pub("ch", b"\x00\r\n\xff")]),
    ("publish 100 KB", [b"SUBSCRIBE ch\r\n", pub("ch", b"z" * 100000)]),
    ("publish two receivers", [b"SUBSCRIBE ch\r\n", ("c", b"SUBSCRIBE ch other\r\n"),
                               pub("ch", "m1"), pub("other", "m2")]),
    ("publish channel and pattern", [b"SUBSCRIBE news\r\n", b"PSUBSCRIBE n*\r\n", pub("news", "x")]),
    ("publish two patterns one client", [b"PSUBSCRIBE n* *s\r\n",
                                         ("b", R("PUBLISH", "news", "x"), PSORT)]),
    ("publish pattern and channel two clients", [b"PSUBSCRIBE n*\r\n", ("c", b"SUBSCRIBE news\r\n"),
                                                 pub("news", "x"), pub("nope", "y")]),
    # One publish formatted for RESP2 and RESP3 subscribers of the channel,
    # a pattern and a shard channel of the same name (the engine keeps the
    # last frames formatted for the next subscribers: each must still get
    # its own protocol and kind).
    ("publish to resp2, resp3, pattern and shard", [
        b"SUBSCRIBE ch\r\n", ("c", b"HELLO 3\r\nSUBSCRIBE ch\r\n"),
        ("d", b"SSUBSCRIBE ch\r\n"), ("e", b"HELLO 3\r\nSSUBSCRIBE ch\r\nPSUBSCRIBE c*\r\n"),
        ("f", b"SUBSCRIBE ch\r\n"),
        ("b", R("PUBLISH", "ch", "m1") + R("SPUBLISH", "ch", "s1") + R("PUBLISH", "ch", "m2")),
        ("b", R("PUBLISH", "ch", "m1") + R("SPUBLISH", "ch", "s1"))]),
    ("publish order kept", [b"SUBSCRIBE ch\r\n",
                            ("b", b"".join(R("PUBLISH", "ch", "m%d" % i) for i in range(50)))]),
    ("publish to several channels", [b"SUBSCRIBE a b c\r\n",
                                     ("b", R("PUBLISH", "a", "1") + R("PUBLISH", "c", "3"))]),
    ("publish after unsubscribe", [b"SUBSCRIBE ch\r\n", b"UNSUBSCRIBE ch\r\n", pub("ch", "x")]),
    ("publish after punsubscribe", [b"PSUBSCRIBE c*\r\n", b"PUNSUBSCRIBE c*\r\n", pub("ch", "x")]),
    ("publish after disconnect", [b"SUBSCRIBE ch\r\n", b"QUIT\r\n", pub("ch", "x")]),
    ("publish case sensitive", [b"SUBSCRIBE ch\r\n", pub("CH", "x"), pub("ch", "y")]),
    ("publish binary channel", [R("SUBSCRIBE", b"\x00c\xff"), pub(b"\x00c\xff", "x")]),
    ("spublish to ssubscriber only", [b"SSUBSCRIBE x\r\n", ("c", b"SUBSCRIBE x\r\nPSUBSCRIBE *\r\n"),
                                      spub("x", "shard"), pub("x", "plain")]),
    ("spublish two receivers", [b"SSUBSCRIBE x\r\n", ("c", b"SSUBSCRIBE x\r\n"), spub("x", "m")]),
    ("publisher subscribed resp3 gets own", [b"HELLO 3\r\nSUBSCRIBE ch\r\n", b"PUBLISH ch self\r\n"]),
    # RESP3
    ("resp3 subscribe", [b"HELLO 3\r\n", b"SUBSCRIBE a b a\r\n"]),
    ("resp3 message", [b"HELLO 3\r\nSUBSCRIBE ch\r\n", pub("ch", "hi")]),
    ("resp3 pmessage", [b"HELLO 3\r\nPSUBSCRIBE c?\r\n", pub("ch", "hi")]),
    ("resp3 smessage", [b"HELLO 3\r\nSSUBSCRIBE s\r\n", spub("s", "hi")]),
    ("resp3 publisher resp3", [b"SUBSCRIBE ch\r\n", ("b", b"HELLO 3\r\n"), pub("ch", "x")]),
    ("resp3 any command while subscribed", [b"HELLO 3\r\nSUBSCRIBE ch\r\n", b"PING\r\n",
                                            b"PING x\r\n", b"ECHO e\r\n", b"SELECT 0\r\n",
                                            b"PUBSUB NUMSUB ch\r\n", b"CLIENT GETNAME\r\n",
                                            b"PUBLISH other y\r\n"]),
    ("resp3 client id subscribed", [b"HELLO 3\r\nSUBSCRIBE ch\r\n", (b"a", b"CLIENT ID\r\n", ID)]),
    ("resp3 unsubscribe all", [b"HELLO 3\r\nSUBSCRIBE a b c\r\n",
                               (b"a", b"UNSUBSCRIBE\r\n", UNSUB_ALL)]),
    ("resp3 unsubscribe none", [b"HELLO 3\r\n", b"UNSUBSCRIBE\r\n", b"PUNSUBSCRIBE\r\n",
                                b"SUNSUBSCRIBE\r\n"]),
    ("resp3 hello 2 while subscribed", [b"HELLO 3\r\nSUBSCRIBE a\r\n", b"HELLO 2\r\n", b"PING\r\n",
                                        b"ECHO x\r\n"]),
    ("resp3 reset", [b"HELLO 3\r\nSUBSCRIBE a\r\n", b"RESET\r\n", b"PING\r\n", pub("a", "x")]),
    ("resp3 message between replies", [b"HELLO 3\r\nSUBSCRIBE ch\r\n",
                                       pub("ch", "1"), b"PING\r\n", pub("ch", "2")]),
    # PUBSUB introspection
    ("pubsub empty", [b"PUBSUB CHANNELS\r\nPUBSUB NUMSUB\r\nPUBSUB NUMPAT\r\n"
                      b"PUBSUB SHARDCHANNELS\r\nPUBSUB SHARDNUMSUB\r\n"]),
    ("pubsub channels", [b"SUBSCRIBE a1 a2 b1\r\n", ("c", b"SUBSCRIBE a1 c1\r\nPSUBSCRIBE p*\r\n"),
                         ("b", b"PUBSUB CHANNELS\r\n", SORT), ("b", b"PUBSUB CHANNELS a*\r\n", SORT),
                         ("b", b"PUBSUB CHANNELS zz*\r\n"), ("b", b"PUBSUB CHANNELS b1\r\n")]),
    ("pubsub numsub", [b"SUBSCRIBE a1 a2\r\n", ("c", b"SUBSCRIBE a1\r\nPSUBSCRIBE a*\r\n"),
                       ("b", b"PUBSUB NUMSUB a1 a2 zz a1\r\n")]),
    ("pubsub numpat", [b"PSUBSCRIBE p* q?\r\n", ("c", b"PSUBSCRIBE p* r\r\n"),
                       ("b", b"PUBSUB NUMPAT\r\n"), ("c", b"PUNSUBSCRIBE\r\n", UNSUB_ALL),
                       ("b", b"PUBSUB NUMPAT\r\n")]),
    ("pubsub shardchannels", [b"SSUBSCRIBE s1 s2 t1\r\n", ("c", b"SUBSCRIBE s9\r\n"),
                              ("b", b"PUBSUB SHARDCHANNELS\r\n", SORT),
                              ("b", b"PUBSUB SHARDCHANNELS s*\r\n", SORT),
                              ("b", b"PUBSUB SHARDNUMSUB s1 s9 t1\r\n")]),
    ("pubsub channels after unsubscribe", [b"SUBSCRIBE a1 a2\r\n", b"UNSUBSCRIBE a1\r\n",
                                           ("b", b"PUBSUB CHANNELS\r\nPUBSUB NUMSUB a1 a2\r\n")]),
    ("pubsub channels glob", [b"SUBSCRIBE hello hallo hxllo h*llo\r\n",
                              ("b", b"PUBSUB CHANNELS h[^x]llo\r\n", SORT),
                              ("b", b"PUBSUB CHANNELS h\\*llo\r\n")]),
    ("pubsub lower case", [b"pubsub numpat\r\npubsub channels\r\n"]),
    ("pubsub resp3", [b"SUBSCRIBE a1\r\n", ("b", b"HELLO 3\r\nPUBSUB NUMSUB a1 x\r\n"
                                                 b"PUBSUB SHARDNUMSUB a1\r\nPUBSUB NUMPAT\r\n"),
                      ("b", b"PUBSUB CHANNELS\r\n")]),
    ("pubsub help", [b"PUBSUB HELP\r\n"]),
    ("pubsub unknown subcommand", [b"PUBSUB FOO\r\n"]),
    ("pubsub channels two args", [b"PUBSUB CHANNELS a b\r\n"]),
    ("pubsub numpat arg", [b"PUBSUB NUMPAT x\r\n"]),
    ("pubsub shardchannels two args", [b"PUBSUB SHARDCHANNELS a b\r\n"]),
    # RESET
    ("reset", [b"CLIENT SETNAME n\r\nHELLO 3\r\n", b"RESET\r\n", b"CLIENT GETNAME\r\nPING\r\n"]),
    ("reset arg", [b"RESET x\r\n"]),
    # inline commands
    ("inline subscribe", [b"subscribe a b\r\n"]),
    ("inline subscribe 300 channels", [b"SUBSCRIBE " + b" ".join(b"c%d" % i for i in range(300))
                                       + b"\r\n", (b"a", b"UNSUBSCRIBE\r\n", UNSUB_ALL)]),
    ("inline double quotes", [b'ECHO "a b"\r\n']),
    ("inline single quotes", [b"ECHO 'a b'\r\n"]),
    ("inline escapes", [b'ECHO "\\x41\\n\\t\\"" \'it\\\'s\'\r\n']),
    ("inline empty quoted", [b'ECHO ""\r\n']),
    ("inline spaces and tabs", [b"   PING   \r\n", b"PING\tx\r\n"]),
    ("inline empty lines", [b"\r\n\r\n\n", b"PING\r\n"]),
    ("inline 32 KB", [b"ECHO " + b"i" * 32768 + b"\r\n"]),
    ("inline bulk-looking line", [b"$5\r\nhello\r\n"]),
    ("inline unbalanced double quote", [b'SET "a\r\n']),
    ("inline quote not followed by space", [b'ECHO "a"b\r\n']),
    ("inline unbalanced single quote", [b"ECHO 'a\r\n"]),
    ("inline too long without newline", [b"PING" + b" " * 70000]),
    # pipelining, split writes
    ("pipeline 100 pings", [b"PING\r\n" * 100]),
    ("pipeline mixed inline resp", [b"PING\r\n" + R("ECHO", "x") + b"ECHO y\r\n" + R("PING")]),
    ("pipeline subscribe cycle", [b"SUBSCRIBE a\r\nPING\r\nUNSUBSCRIBE a\r\nPING\r\nECHO e\r\n"]),
    ("pipeline resp3", [b"HELLO 3\r\nSUBSCRIBE a\r\nPING\r\nPUBLISH a me\r\nUNSUBSCRIBE\r\n"]),
    ("split resp command", [b"*2\r\n$4\r\nEC", b"HO\r\n$3\r\nab", b"c\r\n"]),
    ("split inline command", [b"PI", b"NG\r", b"\n"]),
    ("split byte by byte", [bytes([c]) for c in R("PING", "x")]),
    ("resp empty arrays", [b"*0\r\n*-1\r\n*-5\r\nPING\r\n"]),
    ("resp bulk without crlf check", [b"*1\r\n$4\r\nPINGXY", b"PING\r\n"]),
    # protocol errors: an error, then the connection is closed
    ("bad multibulk count", [b"*abc\r\n"]),
    ("multibulk count 2^31", [b"*2147483648\r\n"]),
    ("multibulk count 10^9", [b"*1000000000\r\n"]),  # redis-server waits for more (no reply)
    ("negative bulk length", [b"*1\r\n$-5\r\n"]),
    ("bulk length 2^31", [b"*1\r\n$2147483648\r\n"]),
    ("bad bulk length", [b"*1\r\n$abc\r\n"]),
    ("bulk expected", [b"*1\r\nPING\r\n"]),
    ("protocol error after good command", [b"PING\r\n*1\r\n$x\r\nPING\r\n"]),
    ("protocol error while subscribed", [b"SUBSCRIBE a\r\n", b"*x\r\n"]),
    ("protocol error resp3", [b"HELLO 3\r\n", b"*1\r\n$-2\r\n"]),
    # commands Kraken does not implement (UNIMPL): Kraken answers unknown command
    ("unimpl get", [(b"a", b"GET x\r\n", UNIMPL)]),
    ("unimpl set del incr", [(b"a", b"SET x 1\r\nDEL x\r\nINCR x\r\n", UNIMPL)]),
    ("unimpl get subscribed", [b"SUBSCRIBE a\r\n", (b"a", b"GET x\r\n", UNIMPL)]),
    ("unimpl get resp3 subscribed", [b"HELLO 3\r\nSUBSCRIBE a\r\n", (b"a", b"GET x\r\n", UNIMPL)]),
]

# Redis glob rules: (pattern, channels that match, channels that do not)
GLOBS = [
    ("*", ["", "a", "anything at all"], []),
    ("h*llo", ["hllo", "hello", "heeeello"], ["hell", "ahello"]),
    ("h?llo", ["hello", "hallo"], ["hllo", "heello"]),
    ("h[a-c]llo", ["hallo", "hbllo", "hcllo"], ["hello", "hAllo"]),
    ("h[c-a]llo", ["hbllo"], ["hdllo"]),
    ("h[^x]llo", ["hello", "hallo"], ["hxllo", "hllo"]),
    ("h[ae]llo", ["hallo", "hello"], ["hillo"]),
    ("h\\*llo", ["h*llo"], ["hello", "hllo"]),
    ("h\\?llo", ["h?llo"], ["hello"]),
    ("a[\\]]b", ["a]b"], ["ab", "a\\b"]),
    ("a\\", ["a\\"], ["a"]),
    ("a[", ["a["], ["a"]),
    ("a[b", ["ab"], ["a[b", "a"]),
    ("*.*", ["a.b", "."], ["ab"]),
    ("[a-z]*[0-9]", ["x1", "abc9"], ["1x", "x"]),
]
for _pat, _yes, _no in GLOBS:
    CASES.append(("glob %s" % _pat, [R("PSUBSCRIBE", _pat)] +
                  [("b", R("PUBLISH", ch, "m")) for ch in _yes + _no]))

# Run against a server with a password (redis_password / requirepass).
AUTH_CASES = [
    ("noauth ping", [b"PING\r\n"]),
    ("noauth ping two args", [b"PING a b\r\n"]),
    ("noauth subscribe", [b"SUBSCRIBE a\r\nPSUBSCRIBE a*\r\nSSUBSCRIBE s\r\n"]),
    ("noauth publish", [b"PUBLISH a x\r\nSPUBLISH a x\r\n"]),
    ("noauth others", [b"ECHO x\r\nCLIENT ID\r\nCLIENT SETNAME x\r\nSELECT 0\r\nPUBSUB NUMPAT\r\n"]),
    ("noauth arity first", [b"ECHO\r\nPUBLISH a\r\n"]),
    ("noauth unknown command", [b"foo x\r\n"]),
    ("noauth unimpl", [(b"a", b"GET x\r\n", UNIMPL)]),
    ("noauth hello", [b"HELLO 3\r\n", b"HELLO 2\r\n", b"HELLO\r\n"]),
    ("noauth quit", [b"QUIT\r\n"]),
    ("noauth reset", [b"RESET\r\n", b"PING\r\n"]),
    ("noauth big multibulk", [b"*11\r\n"]),
    ("noauth big bulk", [b"*1\r\n$20000\r\n"]),
    ("noauth small bulk", [b"*2\r\n$4\r\nECHO\r\n$16384\r\n" + b"e" * 16384 + b"\r\n"]),
    ("auth wrong", [b"AUTH wrong\r\n", b"PING\r\n"]),
    ("auth right", [R("AUTH", PASSWORD), b"PING\r\n"]),
    ("auth default user", [R("AUTH", "default", PASSWORD), b"PING\r\n"]),
    ("auth default user wrong", [b"AUTH default wrong\r\n"]),
    ("auth other user", [R("AUTH", "someone", PASSWORD)]),
    ("auth syntax", [b"AUTH a b c\r\n", b"AUTH\r\n"]),
    ("auth twice", [R("AUTH", PASSWORD), R("AUTH", PASSWORD), b"AUTH wrong\r\n", b"PING\r\n"]),
    ("auth then big multibulk", [R("AUTH", PASSWORD),
                                 b"*12\r\n" + b"".join(b"$1\r\nx\r\n" for _ in range(12))]),
    ("hello auth right", [R("HELLO", "3", "AUTH", "default", PASSWORD), b"PING\r\n"]),
    ("hello 2 auth setname", [R("HELLO", "2", "AUTH", "default", PASSWORD, "SETNAME", "n1"),
                              b"CLIENT GETNAME\r\n"]),
    ("hello auth wrong", [b"HELLO 3 AUTH default wrong\r\n", b"PING\r\n"]),
    ("hello auth other user", [R("HELLO", "3", "AUTH", "someone", PASSWORD)]),
    ("hello auth missing", [b"HELLO 3 AUTH default\r\n"]),
    ("reset deauthenticates", [R("AUTH", PASSWORD), b"RESET\r\n", b"PING\r\n"]),
    ("auth subscribe publish", [R("AUTH", PASSWORD) + b"SUBSCRIBE ch\r\n",
                                ("b", R("AUTH", PASSWORD)), pub("ch", "x")]),
    ("unauthenticated cannot publish", [R("AUTH", PASSWORD) + b"SUBSCRIBE ch\r\n",
                                        pub("ch", "x")]),
    ("noauth protocol error", [b"*x\r\n"]),
]


# ---- normalisation ----

HELLO_KEYS = [b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"]
HELLO_MASK = {b"server": (b"$", b"<server>"), b"version": (b"$", b"<version>"),
              b"id": (b":", b"<id>")}
UNSUB_KINDS = (b"unsubscribe", b"punsubscribe", b"sunsubscribe")


def norm_hello(v):
    t, items = v
    if t == b"%" and items and [k for k, _ in items] == [(b"$", k) for k in HELLO_KEYS]:
        return (t, [(k, HELLO_MASK.get(k[1], x)) for k, x in items])
    if t == b"*" and items and len(items) == 14 and \
            [items[i] for i in range(0, 14, 2)] == [(b"$", k) for k in HELLO_KEYS]:
        out = list(items)
        for i in range(0, 14, 2):
            out[i + 1] = HELLO_MASK.get(items[i][1], items[i + 1])
        return (t, out)
    return v


def is_unsub(v):
    return v[0] in (b"*", b">") and bool(v[1]) and len(v[1]) == 3 and \
        v[1][0][0] == b"$" and v[1][0][1] in UNSUB_KINDS


def normalise(frames, flags, problems):
    out = [norm_hello(v) for v in frames]
    if ID in flags:
        for i, v in enumerate(out):
            if v[0] == b":":
                if int(v[1]) <= 0:
                    problems.append("client id %r not positive" % v[1])
                out[i] = (b":", b"<id>")
    if SORT in flags:
        out = [(v[0], sorted(v[1], key=rt.encode)) if v[0] in (b"*", b"~") and v[1] else v
               for v in out]
    if PSORT in flags:
        i = 0
        while i < len(out):
            j = i
            while j < len(out) and out[j][0] in (b"*", b">") and out[j][1] and \
                    out[j][1][0] == (b"$", b"pmessage"):
                j += 1
            out[i:j] = sorted(out[i:j], key=rt.encode)
            i = max(j, i + 1)
    if UNSUB_ALL in flags:
        i = 0
        while i < len(out):
            j = i
            while j < len(out) and is_unsub(out[j]):
                j += 1
            if j > i:
                names = sorted((v[1][1] for v in out[i:j]), key=rt.encode)
                for k in range(i, j):
                    t, (kind, _, count) = out[k][0], out[k][1]
                    out[k] = (t, [kind, names[k - i], count])
                i = j
            else:
                i += 1
    return out


# ---- running a case on two servers ----

class Side:
    def __init__(self, port):
        self.port = port
        self.conns = {}
        self.order = []

    def conn(self, name):
        if name not in self.conns:
            self.conns[name] = rt.Conn(self.port)
            self.order.append(name)
        return self.conns[name]

    def close(self):
        for c in self.conns.values():
            c.close()

    def read_quiet(self, settle, deadline):
        """Read every connection until none has sent anything for settle s."""
        while time.time() < deadline:
            live = [c for c in self.conns.values() if not c.closed]
            if not live:
                return
            r, _, _ = select.select([c.sock for c in live], [], [],
                                    min(settle, max(0.0, deadline - time.time())))
            if not r:
                return
            for c in live:
                if c.sock in r:
                    c._recv(0)

    def read_like(self, want, deadline):
        """Read until each connection has want[name] = (frames, closed), then
        SETTLE_EXTRA more seconds."""
        while time.time() < deadline:
            waiting = []
            for name, c in self.conns.items():
                n, closed = want.get(name, (0, False))
                try:
                    have = len(rt.split_frames(c.buf)[0])
                except rt.RespError:
                    have = n
                if (have < n or (closed and not c.closed)) and not c.closed:
                    waiting.append(c)
            if not waiting:
                break
            r, _, _ = select.select([c.sock for c in waiting], [], [],
                                    max(0.0, deadline - time.time()))
            for c in waiting:
                if c.sock in r:
                    c._recv(0)
        self.read_quiet(SETTLE_EXTRA, time.time() + SETTLE_EXTRA + 0.01)

    def take(self, name):
        c = self.conns[name]
        raw, c.buf = c.buf, b""
        return raw, c.closed


def count_frames(buf):
    try:
        return len(rt.split_frames(buf)[0])
    except rt.RespError:
        return 1 << 30


def decode(raw):
    """(frames, tail, problem)."""
    try:
        frames, tail = rt.split_frames(raw)
    except rt.RespError as e:
        return [], raw, "not RESP: %s" % e
    if b"".join(rt.encode(v) for v in frames) + tail != raw:
        return frames, tail, "not canonical RESP"
    return frames, tail, None


def is_unknown_command(v):
    return v[0] == b"-" and v[1].startswith(b"ERR unknown command '")


def run_case(steps, ref_port, tgt_port, target):
    """Runs one case on both servers; returns a list of mismatch descriptions."""
    ref, tgt = Side(ref_port), Side(tgt_port)
    problems = []
    try:
        for sn, step in enumerate(steps):
            if isinstance(step, bytes):
                client, data, flags = "a", step, ()
            else:
                client, data, flags = step[0], step[1], tuple(step[2:])
            client = client.decode() if isinstance(client, bytes) else client
            for side in (ref, tgt):
                c = side.conn(client)
                try:
                    c.send(data)
                except OSError:
                    pass
            ref.read_quiet(SETTLE, time.time() + DEADLINE)
            for _ in range(2):
                want = {name: (count_frames(c.buf), c.closed) for name, c in ref.conns.items()}
                tgt.read_like(want, time.time() + TARGET_DEADLINE)
                # The target ahead of the reference?  The reference may only
                # have been slow (a loaded machine): give it longer, once.
                if not any(count_frames(c.buf) > want[name][0] or (c.closed and not want[name][1])
                           for name, c in tgt.conns.items()):
                    break
                ref.read_quiet(SETTLE * 4, time.time() + DEADLINE)
            got_ref = {}
            for name in ref.order:
                raw, closed = ref.take(name)
                frames, tail, bad = decode(raw)
                if bad:
                    raise AssertionError("reference server sent %s: %r" % (bad, raw[:300]))
                got_ref[name] = (raw, frames, tail, closed)
            for name in ref.order:
                rraw, rframes, rtail, rclosed = got_ref[name]
                traw, tclosed = tgt.take(name)
                tframes, ttail, bad = decode(traw)
                where = "step %d (client %s sent %r), client %s got" % (sn, client, data[:120],
                                                                         name)
                if bad:
                    problems.append("%s: target sent %s: %r" % (where, bad, traw[:300]))
                    continue
                if UNIMPL in flags and target == "kraken" and name == client:
                    if not rframes or len(tframes) != len(rframes) or \
                            not all(is_unknown_command(v) for v in tframes):
                        problems.append("%s: expected %d unknown-command errors, got %r"
                                        % (where, len(rframes), traw[:300]))
                    continue
                sub = []
                fl = flags if name == client else \
                    tuple(f for f in flags if f in (PSORT, UNSUB_ALL))
                rn = normalise(rframes, fl, sub)
                tn = normalise(tframes, fl, sub)
                problems += ["%s: %s" % (where, s) for s in sub]
                if rn != tn or rtail != ttail or rclosed != tclosed:
                    problems.append("%s:\n   redis:  %r%s\n   target: %r%s" % (
                        where, b"".join(map(rt.encode, rn)) + rtail, " +close" if rclosed else "",
                        b"".join(map(rt.encode, tn)) + ttail, " +close" if tclosed else ""))
    finally:
        ref.close()
        tgt.close()
    return problems


def wait_idle(port, password=None, timeout=5.0):
    """Waits until the server has no subscription left (closed clients of the
    previous case are gone), so PUBSUB counts start from zero."""
    c = rt.Conn(port)
    try:
        if password:
            c.call("AUTH", password)
        deadline = time.time() + timeout
        while True:
            c.send(b"PUBSUB NUMPAT\r\nPUBSUB CHANNELS\r\nPUBSUB SHARDCHANNELS\r\n")
            r = c.read_frames(3)
            if r == [(b":", b"0"), (b"*", []), (b"*", [])]:
                return
            if time.time() > deadline:
                raise AssertionError("subscriptions left over on port %d: %r" % (port, r))
            time.sleep(0.02)
    finally:
        c.close()


# Most of a case's time is spent waiting for quiet lines, so the cases run
# PAIRS at a time, each on its own (reference, target) pair of servers: a
# case sees no other case's subscriptions.  REDIS_DIFF_CASE=text runs only
# the cases whose names contain text.
PAIRS = int(os.environ.get("REDIS_DIFF_PAIRS", "4"))
ONLY = os.environ.get("REDIS_DIFF_CASE", "")


class _Pairs:
    password = None
    cases = []

    @classmethod
    def setUpClass(cls):
        cls.pairs = []
        try:
            for _ in range(PAIRS):
                ref = rt.start("redis", password=cls.password)
                cls.pairs.append(ref)
                tgt = rt.start(TARGET, password=cls.password)
                cls.pairs[-1] = (ref, tgt)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in cls.pairs:
            for srv in (p if isinstance(p, tuple) else (p,)):
                srv.stop()

    def run_one(self, free, steps):
        ref, tgt = free.get()
        try:
            wait_idle(ref.redis_port, self.password)
            wait_idle(tgt.redis_port, self.password)
            return run_case(steps, ref.redis_port, tgt.redis_port, TARGET)
        finally:
            free.put((ref, tgt))

    def test_cases(self):
        names = set()
        for name, _ in self.cases:
            assert name not in names, "duplicate case name %r" % name
            names.add(name)
        todo = [(n, st) for n, st in self.cases if ONLY in n]
        self.assertTrue(todo, "no case matches REDIS_DIFF_CASE=%r" % ONLY)
        free = queue.Queue()
        for p in self.pairs:
            free.put(p)
        with concurrent.futures.ThreadPoolExecutor(len(self.pairs)) as ex:
            futures = [(n, ex.submit(self.run_one, free, st)) for n, st in todo]
            failed = ["case %r:\n%s" % (n, "\n".join(f.result())) for n, f in futures
                      if f.result()]
        print("\n  %s: %d cases, %d failed" % (type(self).__name__, len(todo), len(failed)),
              file=sys.stderr)
        if failed:
            self.fail("\n\n".join(failed))


class Diff(_Pairs, unittest.TestCase):
    """CASES on servers without a password."""
    cases = CASES


class DiffAuth(_Pairs, unittest.TestCase):
    """AUTH_CASES on servers with a password."""
    password = PASSWORD
    cases = AUTH_CASES


# What the reference must answer, byte for byte: the facts the cases rely on,
# so a different redis-server build is noticed rather than silently followed.
ANCHORS = [
    ([b"SUBSCRIBE a\r\n", b"PING\r\n"], b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
    ([b"SUBSCRIBE a\r\n", b"GET x\r\n"],
     b"-ERR Can't execute 'get': " + SUBMODE_ERR + b"\r\n"),
    ([b"SUBSCRIBE a\r\n", b"PUBLISH a x\r\n"],
     b"-ERR Can't execute 'publish': " + SUBMODE_ERR + b"\r\n"),
    ([b"HELLO 3\r\n", b"SUBSCRIBE a\r\n", b"PUBLISH a hi\r\n"],
     b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n:1\r\n"),
    ([b"SUBSCRIBE\r\n"], b"-ERR wrong number of arguments for 'subscribe' command\r\n"),
    ([b"foo a b\r\n"], b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"),
    ([b"AUTH x\r\n"], b"-ERR AUTH <password> called without any password configured for the "
                       b"default user. Are you sure your configuration is correct?\r\n"),
    ([b"SELECT 1\r\n"], b"-ERR DB index is out of range\r\n"),
    ([b"*abc\r\n"], b"-ERR Protocol error: invalid multibulk length\r\n"),
]


class ReferenceAnchors(unittest.TestCase):
    def test_reference_answers(self):
        srv = rt.start("redis")
        try:
            for steps, last in ANCHORS:
                c = rt.Conn(srv.redis_port)
                for st in steps:
                    c.send(st)
                    if st is not steps[-1]:
                        c.read_frames(1)
                frames = c.read_frames(len(rt.split_frames(last)[0]))
                self.assertEqual(b"".join(map(rt.encode, frames)), last, steps)
                c.close()
        finally:
            srv.stop()


class Selftest(unittest.TestCase):
    """The helpers themselves, without servers."""

    def test_roundtrip(self):
        for raw in [b"+OK\r\n", b"$-1\r\n", b"*2\r\n$1\r\na\r\n:1\r\n", b"_\r\n",
                    b"%1\r\n$1\r\nk\r\n*0\r\n", b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$0\r\n\r\n"]:
            frames, tail = rt.split_frames(raw)
            self.assertEqual((b"".join(map(rt.encode, frames)), tail), (raw, b""))

    def test_unsub_all_norm(self):
        fr, _ = rt.split_frames(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n"
                                b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n")
        n = normalise(fr, (UNSUB_ALL,), [])
        self.assertEqual([x[1][1][1] for x in n], [b"a", b"b"])
        self.assertEqual([x[1][2][1] for x in n], [b"1", b"0"])


if __name__ == "__main__":
    print("redis_diff_test: target %s, %d cases + %d with a password"
          % (TARGET, len(CASES), len(AUTH_CASES)), flush=True)
    unittest.main(verbosity=1)
