// Browser test of the chat page (a client of the built-in events, docs/EVENTS.md): a server under test,
// headless Debian Chromium, two pages with different users in one room.
//
// Environment:
//   CHAT_SERVER_CMD   command that starts the server (run by /bin/sh from the repository root, with PORT set);
//                     default: <repo>/target/release/switchyard
//   CHROMIUM          browser executable; default /usr/bin/chromium
//   ARTIFACT_DIR      where screenshots and the server log go; default a fresh directory under the temp dir
//   SERVER_START_TIMEOUT_MS  how long to wait for GET / to answer; default 30000

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const serverCommand = process.env.CHAT_SERVER_CMD || path.join(repoRoot, 'target/release/switchyard');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const serverStartTimeoutMs = Number(process.env.SERVER_START_TIMEOUT_MS || 30000);
const UI_TIMEOUT_MS = 10000;
const ROOM = 'test-room';

const timings = {};
let artifactDir;
let profileDir;
let server;
let serverLog = '';
let baseUrl;
let serverPort;
let context;

/** Asks the kernel for a free loopback port. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function startServer(port) {
  // exec: the shell becomes the server, so signalling the process group reaches it directly.
  const child = spawn('/bin/sh', ['-c', `exec ${serverCommand}`], {
    cwd: repoRoot,
    // HOST keeps the switchyard binary on loopback (it binds 0.0.0.0 by default).
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const collect = (chunk) => {
    // Bounded: a chatty server must not eat the test's memory.
    serverLog = (serverLog + chunk.toString()).slice(-200000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  child.exitInfo = null;
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      child.exitInfo = { code, signal };
      resolve(child.exitInfo);
    });
  });
  return child;
}

async function stopServer(child) {
  if (!child || child.exitInfo) return;
  const signalGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  signalGroup('SIGTERM');
  const stopped = await Promise.race([child.exited.then(() => true), delay(3000).then(() => false)]);
  if (!stopped) {
    signalGroup('SIGKILL');
    await Promise.race([child.exited, delay(2000)]);
  }
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls GET / until it answers 200 with the page, the server exits, or the deadline passes. */
async function waitForPage(url, child) {
  const deadline = Date.now() + serverStartTimeoutMs;
  let lastError = 'no attempt made';
  while (Date.now() < deadline) {
    if (child.exitInfo) {
      throw new Error(`server exited early (${JSON.stringify(child.exitInfo)}); log:\n${serverLog.slice(-4000)}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      const body = await response.text();
      if (response.ok && body.includes('id="messages"')) return;
      lastError = `HTTP ${response.status}, ${body.length} bytes`;
    } catch (err) {
      lastError = err.cause ? `${err.message}: ${err.cause.message}` : err.message;
    }
    await delay(100);
  }
  throw new Error(`GET ${url} did not serve the chat page within ${serverStartTimeoutMs} ms (${lastError}); log:\n${serverLog.slice(-4000)}`);
}

/** Opens the page and records anything that went wrong inside it. */
async function openChatPage(label, viewport) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`${label} page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') page.problems.push(`${label} console ${msg.type()}: ${msg.text()}`);
  });
  await page.setViewportSize(viewport);
  await page.goto(baseUrl, { timeout: UI_TIMEOUT_MS, waitUntil: 'load' });
  await page.waitForFunction(() => document.querySelector('#status')?.dataset.state === 'connected', null, {
    timeout: UI_TIMEOUT_MS,
  });
  // Note when each chat message appears, for delivery timings.
  await page.evaluate(() => {
    window.messageArrivals = new Map();
    new MutationObserver((records) => {
      const now = Date.now();
      for (const record of records) {
        for (const node of record.addedNodes) {
          const text = node.querySelector?.('.text')?.textContent;
          if (text !== undefined && !window.messageArrivals.has(text)) window.messageArrivals.set(text, now);
        }
      }
    }).observe(document.querySelector('#messages'), { childList: true });
  });
  return page;
}

async function join(page, name) {
  await page.fill('#name', name);
  await page.fill('#room', ROOM);
  await page.click('#join', { timeout: UI_TIMEOUT_MS });
  await page.locator('#room-title', { hasText: `#${ROOM}` }).waitFor({ timeout: UI_TIMEOUT_MS });
  await page.locator('#send:enabled').waitFor({ timeout: UI_TIMEOUT_MS });
}

function systemLine(page, text) {
  return page.locator('#messages li[data-kind="system"]', { hasText: text });
}

function chatMessage(page, author, text) {
  return page.locator('#messages li[data-kind="message"]').filter({ hasText: text }).filter({
    has: page.locator('.author', { hasText: author }),
  });
}

/** Types and sends a message; returns the page's clock when the form was submitted. */
async function send(page, text) {
  await page.fill('#message', text);
  await page.evaluate(() => {
    document.querySelector('#compose-form').addEventListener('submit', () => (window.lastSubmitAt = Date.now()), {
      capture: true,
      once: true,
    });
  });
  await page.click('#send', { timeout: UI_TIMEOUT_MS });
  return page.evaluate(() => window.lastSubmitAt);
}

/** Waits until `text` is shown on the page; returns the page's clock when it was added (same machine clock
 * as `send`'s, so the difference is the delivery time through the server). */
async function arrivalTime(page, text) {
  const handle = await page.waitForFunction((wanted) => window.messageArrivals.get(wanted) ?? false, text, {
    polling: 10,
    timeout: UI_TIMEOUT_MS,
  });
  return handle.jsonValue();
}

/** The member list as shown, the page's own user marked with a trailing " (you)". */
/** Waits until exactly `count` elements match (a bounded wait). */
async function waitForCount(locator, count) {
  const deadline = Date.now() + UI_TIMEOUT_MS;
  let seen = await locator.count();
  while (seen !== count) {
    if (Date.now() > deadline) assert.fail(`expected ${count} of ${locator}, found ${seen}`);
    await delay(25);
    seen = await locator.count();
  }
}

function dmLine(page, author, text) {
  return page.locator('#messages li[data-kind="dm"]').filter({ hasText: text }).filter({
    has: page.locator('.author', { hasText: author }),
  });
}

/** Waits until the member list is exactly `expected` (a bounded wait). */
async function waitForMembers(page, expected) {
  const deadline = Date.now() + UI_TIMEOUT_MS;
  let seen = await memberNames(page);
  while (JSON.stringify(seen) !== JSON.stringify(expected)) {
    if (Date.now() > deadline) assert.deepEqual(seen, expected, 'member list');
    await delay(25);
    seen = await memberNames(page);
  }
}

async function memberNames(page) {
  const entries = await page
    .locator('#members li')
    .evaluateAll((items) => items.map((item) => item.textContent.trim() + (item.classList.contains('me') ? ' (you)' : '')));
  return entries.sort();
}

before(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(`${chromiumPath} is missing: apt-get install -y --no-install-recommends chromium (or set CHROMIUM)`);
  }
  artifactDir = process.env.ARTIFACT_DIR || (await mkdtemp(path.join(os.tmpdir(), 'switchyard-browser-')));
  await mkdir(artifactDir, { recursive: true });
  profileDir = await mkdtemp(path.join(os.tmpdir(), 'switchyard-chromium-profile-'));

  serverPort = await freePort();
  baseUrl = `http://127.0.0.1:${serverPort}/`;
  console.log(`server under test: ${serverCommand} (PORT=${serverPort})`);
  let started = Date.now();
  server = startServer(serverPort);
  await waitForPage(baseUrl, server);
  timings.serverReadyMs = Date.now() - started;

  started = Date.now();
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    headless: true,
    timeout: 30000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  timings.browserLaunchMs = Date.now() - started;
});

after(async () => {
  if (context) await context.close().catch((err) => console.log(`closing the browser failed: ${err.message}`));
  await stopServer(server);
  if (artifactDir) await writeFile(path.join(artifactDir, 'server.log'), serverLog).catch(() => {});
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
  console.log(`timings: ${JSON.stringify(timings)}`);
  if (artifactDir) console.log(`artifacts (screenshots, server.log): ${artifactDir}`);
});

test('two pages with different users: presence, typing, messages, private messages', async () => {
  const started = Date.now();
  const alicePage = await openChatPage('A', { width: 1000, height: 680 });
  const bobPage = await openChatPage('B', { width: 420, height: 760 });
  timings.pagesConnectedMs = Date.now() - started;

  await join(alicePage, 'alice');
  await systemLine(alicePage, 'alice joined').waitFor({ timeout: UI_TIMEOUT_MS });
  assert.match(await alicePage.textContent('#status'), /Connected as alice/);

  await join(bobPage, 'bob');
  // user-connected reaches both the member already there and the joiner.
  await systemLine(alicePage, 'bob joined').waitFor({ timeout: UI_TIMEOUT_MS });
  await systemLine(bobPage, 'bob joined').waitFor({ timeout: UI_TIMEOUT_MS });
  // bob's list comes from the `presence` ack, alice's from user-connected.
  assert.deepEqual(await memberNames(bobPage), ['alice', 'bob (you)']);
  await waitForMembers(alicePage, ['alice (you)', 'bob']);

  // Typing: bob types, alice sees it; bob's message clears it.
  await bobPage.fill('#message', 'typing a reply');
  await alicePage.locator('#typing', { hasText: 'bob is typing…' }).waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await bobPage.textContent('#typing'), '', 'nobody sees their own typing');
  await bobPage.fill('#message', '');

  const tag = Math.random().toString(36).slice(2, 8);
  const hello = `hello from alice ${tag}`;
  let sentAt = await send(alicePage, hello);
  timings.messageAtoBMs = (await arrivalTime(bobPage, hello)) - sentAt;
  await chatMessage(bobPage, 'alice', hello).waitFor({ timeout: UI_TIMEOUT_MS });
  // The sender gets its own message back from the server, shown as its own.
  await chatMessage(alicePage, 'alice', hello).waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await chatMessage(alicePage, 'alice', hello).getAttribute('class'), 'message own');
  assert.equal(await alicePage.inputValue('#message'), '', 'the input is cleared after sending');

  const reply = `hi alice, bob here ${tag} <b>not bold</b>`;
  sentAt = await send(bobPage, reply);
  timings.messageBtoAMs = (await arrivalTime(alicePage, reply)) - sentAt;
  await chatMessage(alicePage, 'bob', reply).waitFor({ timeout: UI_TIMEOUT_MS });
  await chatMessage(bobPage, 'bob', reply).waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await alicePage.textContent('#typing'), '', 'a message ends the typing indicator');
  // Text is shown as text, never parsed as markup.
  assert.equal(await alicePage.locator('#messages b').count(), 0);

  // Each message appears exactly once on each page, with a server-given UUIDv7 id.
  for (const page of [alicePage, bobPage]) {
    assert.equal(await chatMessage(page, 'alice', hello).count(), 1);
    assert.equal(await chatMessage(page, 'bob', reply).count(), 1);
    const ids = await page.locator('#messages li[data-kind="message"]').evaluateAll((items) => items.map((item) => item.dataset.id));
    assert.equal(ids.length, 2);
    for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(ids[0] < ids[1], 'ids are ordered by time');
    assert.equal(await page.locator('#compose-error').isHidden(), true, 'no send error shown');
  }

  // A private message (signal) from alice to bob, picked from the member list.
  await alicePage.locator('#members li', { hasText: 'bob' }).click();
  assert.equal(await alicePage.inputValue('#dm-to'), 'bob');
  await alicePage.fill('#dm-text', `just between us ${tag}`);
  await alicePage.click('#dm-send');
  await dmLine(bobPage, 'alice → you', `just between us ${tag}`).waitFor({ timeout: UI_TIMEOUT_MS });
  await dmLine(alicePage, 'alice → bob', `just between us ${tag}`).waitFor({ timeout: UI_TIMEOUT_MS });
  // To somebody with no socket anywhere: refused as offline, shown, the text kept.
  await alicePage.fill('#dm-to', 'nobody-here');
  await alicePage.fill('#dm-text', 'hello?');
  await alicePage.click('#dm-send');
  await alicePage.locator('#compose-error', { hasText: 'offline' }).waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await alicePage.inputValue('#dm-text'), 'hello?');

  const aliceShot = path.join(artifactDir, 'chat-page-a.png');
  const bobShot = path.join(artifactDir, 'chat-page-b.png');
  await alicePage.screenshot({ path: aliceShot, timeout: UI_TIMEOUT_MS });
  await bobPage.screenshot({ path: bobShot, timeout: UI_TIMEOUT_MS });
  console.log(`screenshots: ${aliceShot} ${bobShot}`);

  // Switching rooms: the old room hears that bob left, bob sees only the new room's members.
  await bobPage.fill('#room', 'other-room');
  await bobPage.click('#join', { timeout: UI_TIMEOUT_MS });
  await bobPage.locator('#room-title', { hasText: '#other-room' }).waitFor({ timeout: UI_TIMEOUT_MS });
  await waitForCount(systemLine(alicePage, 'bob left'), 1);
  await waitForMembers(alicePage, ['alice (you)']);
  await waitForMembers(bobPage, ['bob (you)']);
  await send(alicePage, 'anyone there?');
  await chatMessage(alicePage, 'alice', 'anyone there?').waitFor({ timeout: UI_TIMEOUT_MS });

  // Back again, then leaving: when bob's page goes away the server tells the room.
  await join(bobPage, 'bob');
  await waitForCount(systemLine(alicePage, 'bob joined'), 2);
  const bobProblems = bobPage.problems;
  await bobPage.close();
  await waitForCount(systemLine(alicePage, 'bob left'), 2);
  await waitForMembers(alicePage, ['alice (you)']);

  const problems = [...alicePage.problems, ...bobProblems];
  assert.deepEqual(problems, [], 'no errors or warnings inside the pages');
  await alicePage.close();
});

test('the server enforces the built-in events contract (raw Socket.IO frames from a page)', async () => {
  const page = await openChatPage('raw', { width: 800, height: 600 });
  // Runs inside the page: a bare WebSocket speaking Engine.IO v4 / Socket.IO v5, independent of chat.js.
  const outcome = await page.evaluate(async (timeoutMs) => {
    const url = `ws://${location.host}/socket.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url);
    const inbox = [];
    let wake = () => {};
    ws.onmessage = (event) => {
      if (event.data === '2') ws.send('3');
      else inbox.push(event.data);
      wake();
    };
    ws.onclose = () => wake();
    const next = async (predicate, what) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = inbox.findIndex(predicate);
        if (index !== -1) return inbox.splice(index, 1)[0];
        if (ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for ${what}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(inbox)}`);
        await new Promise((resolve) => {
          wake = resolve;
          setTimeout(resolve, left);
        });
      }
    };
    let ackId = 0;
    const call = async (...args) => {
      const id = ackId++;
      ws.send(`42${id}${JSON.stringify(args)}`);
      const frame = await next((f) => f.startsWith(`43${id}[`), `ack ${id} for ${args[0]}`);
      return JSON.parse(frame.slice(`43${id}`.length));
    };
    // With connection state recovery on (the server's default) the CONNECT reply carries a `pid` and
    // every event an offset as its last argument; the contract is about the arguments before it.
    let recovery = false;
    const event = async (name) => {
      const args = JSON.parse((await next((f) => f.startsWith(`42["${name}"`), name)).slice(2));
      if (recovery) {
        const offset = args.pop();
        if (typeof offset !== 'string') throw new Error(`${name}: expected an offset last, got ${JSON.stringify(offset)}`);
      }
      return args;
    };

    await next((f) => f.startsWith('0{'), 'open packet');
    ws.send('40{"user":"raw"}');
    const connected = JSON.parse((await next((f) => f.startsWith('40{'), 'CONNECT')).slice(2));
    recovery = typeof connected.pid === 'string';

    const results = {};
    results.beforeJoin = await call('message', 'raw-room', { text: 'too early' });
    results.badRoom = await call('join', 42);
    results.join = await call('join', 'raw-room');
    results.connectedLine = await event('user-connected');
    results.presence = await call('presence', 'raw-room');
    results.noData = await call('message', 'raw-room');
    results.sent = await call('message', 'raw-room', { text: 'y'.repeat(2000) });
    results.message = await event('message');
    results.otherUsersRoom = await call('join', 'user:someone');
    results.signalOffline = await call('signal', 'nobody', { x: 1 });
    results.signalSelf = await call('signal', 'raw', { x: 2 });
    results.signal = await event('signal');
    results.leave = await call('leave', 'raw-room');
    results.afterLeave = await call('message', 'raw-room', { text: 'left already' });
    results.unexpected = inbox.slice();
    ws.close();
    return results;
  }, UI_TIMEOUT_MS);

  const refused = (reply, error, label) => assert.deepEqual(reply, [{ ok: false, error }], label);
  refused(outcome.beforeJoin, 'forbidden', 'message before joining');
  refused(outcome.badRoom, 'invalid', 'a room that is not a string');
  assert.deepEqual(outcome.join, [{ ok: true, room: 'raw-room' }]);
  assert.deepEqual(outcome.connectedLine, ['user-connected', { room: 'raw-room', user: 'raw' }]);
  assert.deepEqual(outcome.presence, [{ ok: true, users: ['raw'] }]);
  refused(outcome.noData, 'invalid', 'message without data');
  const [ack] = outcome.sent;
  assert.equal(ack.ok, true);
  const [name, message] = outcome.message;
  assert.equal(name, 'message');
  assert.deepEqual(message, { id: ack.id, room: 'raw-room', user: 'raw', data: { text: 'y'.repeat(2000) }, ts: ack.ts });
  assert.ok(Math.abs(message.ts - Date.now()) < 60000, `ts is a ms timestamp: ${message.ts}`);
  refused(outcome.otherUsersRoom, 'forbidden', "another user's room");
  refused(outcome.signalOffline, 'offline', 'signal to nobody');
  assert.deepEqual(outcome.signalSelf, [{ ok: true }]);
  assert.deepEqual(outcome.signal, ['signal', { from: 'raw', data: { x: 2 } }]);
  assert.deepEqual(outcome.leave, [{ ok: true, room: 'raw-room' }]);
  refused(outcome.afterLeave, 'forbidden', 'message after leaving');
  assert.deepEqual(outcome.unexpected, [], 'no unexpected frames');
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('the page shows a lost connection, reconnects with backoff and rejoins its room', async () => {
  const page = await openChatPage('C', { width: 800, height: 600 });
  await join(page, 'carol');
  await systemLine(page, 'carol joined').waitFor({ timeout: UI_TIMEOUT_MS });

  await stopServer(server);
  await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'reconnecting', null, {
    timeout: UI_TIMEOUT_MS,
  });
  assert.equal(await page.isDisabled('#send'), true, 'sending is off while offline');
  assert.match(await page.textContent('#status'), /retrying in \d+s/);
  await systemLine(page, 'Connection lost').waitFor({ timeout: UI_TIMEOUT_MS });
  const offlineShot = path.join(artifactDir, 'chat-page-offline.png');
  await page.screenshot({ path: offlineShot, timeout: UI_TIMEOUT_MS });
  console.log(`screenshot: ${offlineShot}`);

  const restartedAt = Date.now();
  server = startServer(serverPort);
  await waitForPage(baseUrl, server);
  await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'connected', null, {
    timeout: 20000,
  });
  timings.reconnectAfterRestartMs = Date.now() - restartedAt;
  // The page joins its room again by itself, which the server announces once more.
  await page.waitForFunction(
    () => [...document.querySelectorAll('#messages li[data-kind="system"]')].filter((li) => li.textContent === 'carol joined').length === 2,
    null,
    { timeout: UI_TIMEOUT_MS },
  );
  await systemLine(page, 'Reconnected').waitFor({ timeout: UI_TIMEOUT_MS });
  await page.locator('#send:enabled').waitFor({ timeout: UI_TIMEOUT_MS });
  await send(page, 'back online');
  await chatMessage(page, 'carol', 'back online').waitFor({ timeout: UI_TIMEOUT_MS });

  const shot = path.join(artifactDir, 'chat-page-reconnected.png');
  await page.screenshot({ path: shot, timeout: UI_TIMEOUT_MS });
  console.log(`screenshot: ${shot}`);
  // The dropped connection's failed frames are the only expected noise.
  assert.deepEqual(page.problems.filter((problem) => !/WebSocket connection .* failed/.test(problem)), []);
  await page.close();
});
