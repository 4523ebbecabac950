// The npm `redis` client (node-redis v4, RESP2), unchanged, against the Redis
// port: connect, subscribe, pSubscribe, sSubscribe, publish, receive, password.
//
//   REDIS_TARGET=redis  node --test test/redis_node_test.js
//   REDIS_TARGET=kraken node --test test/redis_node_test.js
//
// The package comes from the project's node_modules (make test-redis installs
// it there from package.json / package-lock.json).
// Servers are started by test/redis_targets.py serve, so that Python and
// Node start redis-server and Kraken the same way; each is stopped by closing
// that helper's standard input.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..');
const redisPkg = require(path.join(ROOT, 'node_modules', 'redis'));
const { createClient } = redisPkg;

const TARGET = process.env.REDIS_TARGET || 'redis';
const PASSWORD = 's3cret';
const TIMEOUT = 5000;

function startServer(password) {
  const args = [path.join(__dirname, 'redis_targets.py'), 'serve', '--target', TARGET];
  if (password) args.push('--password', password);
  const proc = spawn('/usr/bin/python3', args, { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server helper did not start')), 60000);
    const rl = readline.createInterface({ input: proc.stdout });
    rl.once('line', (line) => {
      clearTimeout(timer);
      const info = JSON.parse(line);
      info.stop = () => new Promise((res) => {
        proc.once('exit', res);
        proc.stdin.end();
      });
      resolve(info);
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error('server helper exited ' + code)); });
  });
}

// Resolves with the next value pushed to the returned callback, or rejects
// after TIMEOUT ms.
function inbox() {
  const queue = [];
  const waiters = [];
  const push = (...args) => {
    if (waiters.length) waiters.shift()(args);
    else queue.push(args);
  };
  push.next = () => {
    if (queue.length) return Promise.resolve(queue.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no message within ' + TIMEOUT + ' ms')), TIMEOUT);
      waiters.push((v) => { clearTimeout(t); resolve(v); });
    });
  };
  push.size = () => queue.length;
  return push;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let authServer;
const clients = [];

async function connect(port, opts = {}) {
  const c = createClient({ socket: { host: '127.0.0.1', port, connectTimeout: TIMEOUT, reconnectStrategy: false }, ...opts });
  c.on('error', () => {});
  clients.push(c);
  await c.connect();
  return c;
}

before(async () => {
  server = await startServer(null);
  authServer = await startServer(PASSWORD);
});

after(async () => {
  for (const c of clients) {
    try { await c.quit(); } catch (e) { try { await c.disconnect(); } catch (e2) { /* closed */ } }
  }
  if (server) await server.stop();
  if (authServer) await authServer.stop();
});

test('connect, ping, echo', async () => {
  const c = await connect(server.redis_port);
  assert.equal(await c.ping(), 'PONG');
  assert.equal(await c.ping('hi'), 'hi');
  assert.equal(await c.echo('node'), 'node');
});

test('subscribe, publish, receive', async () => {
  const pub = await connect(server.redis_port);
  const sub = pub.duplicate();
  sub.on('error', () => {});
  clients.push(sub);
  await sub.connect();
  const got = inbox();
  await sub.subscribe(['n1', 'n2'], got);
  assert.equal(await pub.publish('n1', 'hello'), 1);
  assert.equal(await pub.publish('n2', 'world'), 1);
  assert.equal(await pub.publish('n3', 'nobody'), 0);
  assert.deepEqual(await got.next(), ['hello', 'n1']);
  assert.deepEqual(await got.next(), ['world', 'n2']);
  await sub.unsubscribe('n1');
  assert.equal(await pub.publish('n1', 'gone'), 0);
  assert.equal(await pub.publish('n2', 'still'), 1);
  assert.deepEqual(await got.next(), ['still', 'n2']);
  await sub.unsubscribe();
  assert.equal(await pub.publish('n2', 'gone'), 0);
});

test('pSubscribe with glob patterns', async () => {
  const pub = await connect(server.redis_port);
  const sub = await connect(server.redis_port);
  const got = inbox();
  await sub.pSubscribe(['news.*', 'h?llo'], got);
  assert.equal(await pub.publish('news.tech', 'n1'), 1);
  assert.equal(await pub.publish('hello', 'n2'), 1);
  assert.equal(await pub.publish('hllo', 'n3'), 0);
  assert.deepEqual(await got.next(), ['n1', 'news.tech']);
  assert.deepEqual(await got.next(), ['n2', 'hello']);
  await sub.pUnsubscribe('news.*');
  assert.equal(await pub.publish('news.tech', 'n4'), 0);
});

test('channel and pattern receivers are both counted', async () => {
  const pub = await connect(server.redis_port);
  const a = await connect(server.redis_port);
  const b = await connect(server.redis_port);
  const ga = inbox();
  const gb = inbox();
  await a.subscribe('both', ga);
  await b.pSubscribe('bo*', gb);
  assert.equal(await pub.publish('both', 'x'), 2);
  assert.deepEqual(await ga.next(), ['x', 'both']);
  assert.deepEqual(await gb.next(), ['x', 'both']);
});

test('sSubscribe and sPublish', async () => {
  const pub = await connect(server.redis_port);
  const sub = await connect(server.redis_port);
  const got = inbox();
  await sub.sSubscribe('shard1', got);
  assert.equal(await pub.sPublish('shard1', 'sm'), 1);
  assert.equal(await pub.publish('shard1', 'plain'), 0);
  assert.deepEqual(await got.next(), ['sm', 'shard1']);
});

test('buffers and order of 1000 messages', async () => {
  const pub = await connect(server.redis_port);
  const sub = await connect(server.redis_port);
  const got = inbox();
  await sub.subscribe('bulk', got, true);   // bufferMode: Buffer arguments
  const sends = [];
  for (let i = 0; i < 1000; i++) sends.push(pub.publish('bulk', Buffer.from('m' + i + '\r\n\0')));
  assert.deepEqual(await Promise.all(sends), new Array(1000).fill(1));
  for (let i = 0; i < 1000; i++) {
    const [msg, ch] = await got.next();
    assert.ok(Buffer.isBuffer(msg));
    assert.equal(msg.toString(), 'm' + i + '\r\n\0');
    assert.equal(ch.toString(), 'bulk');
  }
});

test('pubsub introspection and client name', async () => {
  const c = await connect(server.redis_port, { name: 'node-client' });
  assert.equal(await c.clientGetName(), 'node-client');
  const sub = await connect(server.redis_port);
  await sub.subscribe('intro', () => {});
  assert.deepEqual(await c.pubSubChannels('intro*'), ['intro']);
  assert.deepEqual({ ...(await c.pubSubNumSub(['intro', 'zz'])) }, { intro: 1, zz: 0 });
  assert.equal(typeof await c.clientId(), 'number');
});

test('password: right, wrong, missing', async () => {
  const c = await connect(authServer.redis_port, { password: PASSWORD });
  assert.equal(await c.ping(), 'PONG');
  const sub = await connect(authServer.redis_port, { username: 'default', password: PASSWORD });
  const got = inbox();
  await sub.subscribe('sec', got);
  assert.equal(await c.publish('sec', 'classified'), 1);
  assert.deepEqual(await got.next(), ['classified', 'sec']);

  const bad = createClient({ socket: { host: '127.0.0.1', port: authServer.redis_port, reconnectStrategy: false }, password: 'wrong' });
  bad.on('error', () => {});
  await assert.rejects(bad.connect(), /WRONGPASS/);
  try { await bad.disconnect(); } catch (e) { /* never connected */ }

  const none = await connect(authServer.redis_port);
  await assert.rejects(none.ping(), /NOAUTH/);
});

test('no stray messages after unsubscribe', async () => {
  const pub = await connect(server.redis_port);
  const sub = await connect(server.redis_port);
  const got = inbox();
  await sub.subscribe('stray', got);
  await sub.unsubscribe('stray');
  assert.equal(await pub.publish('stray', 'x'), 0);
  await sleep(100);
  assert.equal(got.size(), 0);
});

// docs/push.md, "Retroactive subscription from Redis clients": from node-redis
// 4, KRAKEN.REGISTER by sendCommand, then subscribe(), delivers what was
// published in between (KRAKEN.RETROSUBSCRIBE cannot be sent this way: its
// several reply frames break node-redis 4's command queue).  Kraken only.
test('KRAKEN.REGISTER then subscribe', { skip: TARGET !== 'kraken' }, async () => {
  const pub = await connect(server.redis_port);
  const sub = await connect(server.redis_port);
  await pub.publish('reg1', 'before');
  assert.equal(await sub.sendCommand(['KRAKEN.REGISTER']), 'OK');
  await pub.publish('reg1', 'between');
  const got = inbox();
  await sub.subscribe('reg1', got);
  await pub.publish('reg1', 'after');
  assert.deepEqual(await got.next(), ['between', 'reg1']);
  assert.deepEqual(await got.next(), ['after', 'reg1']);
  await sleep(100);
  assert.equal(got.size(), 0);
});
