// The real admin UI (ui/dist of the npm package @socket.io/admin-ui, installed at test time) served by
// Switchyard from admin.ui_dir at /admin/, in headless Debian Chromium: login (and a wrong password),
// sockets and rooms of clients on two nodes over Redis, both servers healthy, live events, a disconnect
// from the UI, and what readonly and production modes hide. Screenshots go to ARTIFACT_DIR (default
// tests/admin/test-artifacts/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { connect, connected, startRedis, startSwitchyard, stopAll, uiDir, within, PASSWORD } from "../lib/harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const artifactDir = process.env.ARTIFACT_DIR || path.join(here, "../test-artifacts");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const UI_TIMEOUT = 10000;

let browser;

before(async () => {
  mkdirSync(artifactDir, { recursive: true });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  await stopAll();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  // Offline: the page's web fonts and icon CSS come from CDNs; only loopback is reachable.
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === "127.0.0.1" || host === "localhost" ? route.continue() : route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  return page;
}

const shot = (page, name) => page.screenshot({ path: path.join(artifactDir, `${name}.png`), fullPage: true });

async function login(page, server, password = PASSWORD) {
  await page.goto(`${server.url}/admin/`);
  await page.getByLabel("Server URL").fill(server.url);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Connect" }).click();
}

const goto = (page, hash) => page.evaluate((h) => (window.location.hash = h), hash);

test("the real UI against two nodes: login, sockets, rooms, servers, events, disconnect", async () => {
  const redis = await startRedis();
  const a = await startSwitchyard({ SWITCHYARD_REDIS_URL: redis.url, SWITCHYARD_ADMIN_SERVER_ID: "node-a", SWITCHYARD_ADMIN_UI_DIR: uiDir });
  const b = await startSwitchyard({ SWITCHYARD_REDIS_URL: redis.url, SWITCHYARD_ADMIN_SERVER_ID: "node-b" });
  const onA = await connected(connect(a.url));
  const onB = await connected(connect(b.url));
  await within(5000, onA.emitWithAck("join", "room-a"), "join");
  await within(5000, onB.emitWithAck("join", "room-b"), "join");

  const page = await newPage();
  await login(page, a, "not-the-password");
  await page.getByText("Invalid credentials").waitFor();
  await shot(page, "01-invalid-credentials");

  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.locator(".v-chip", { hasText: /^\s*connected\s*$/i }).first().waitFor();
  await shot(page, "02-connected-dashboard");

  await goto(page, "#/sockets/");
  await page.locator("tbody tr", { hasText: onA.id }).waitFor();
  await page.locator("tbody tr", { hasText: onB.id }).waitFor();
  const late = await connected(connect(b.url));
  await page.locator("tbody tr", { hasText: late.id }).waitFor();
  await shot(page, "03-sockets-two-nodes");

  await goto(page, "#/rooms/");
  await page.locator("tbody tr", { hasText: "room-a" }).waitFor();
  await page.locator("tbody tr", { hasText: "room-b" }).waitFor();
  await shot(page, "04-rooms");

  await goto(page, "#/servers/");
  await page.locator("tbody tr", { hasText: "node-a" }).filter({ hasText: /healthy/i }).waitFor();
  await page.locator("tbody tr", { hasText: "node-b" }).filter({ hasText: /healthy/i }).waitFor();
  const unhealthy = await page.locator("tbody tr", { hasText: /unhealthy/i }).count();
  assert.equal(unhealthy, 0);
  await shot(page, "05-servers");

  late.emit("live-event", { from: "b" });
  await goto(page, "#/events/");
  await page.locator("tbody tr", { hasText: "Event received" }).filter({ hasText: "live-event" }).waitFor();
  await page.locator("tbody tr", { hasText: "Connection" }).filter({ hasText: late.id }).first().waitFor();
  await page.locator("tbody tr", { hasText: "Room joined" }).filter({ hasText: `user:${late.id}` }).waitFor();
  await shot(page, "06-events");

  // Disconnect B's socket from the Sockets page: the client hears io server disconnect.
  await goto(page, "#/sockets/");
  const idB = onB.id; // socket.io-client forgets it on disconnect
  const reason = new Promise((resolve) => onB.once("disconnect", resolve));
  await page.locator("tbody tr", { hasText: idB }).locator("button:has(i.mdi-logout)").click();
  assert.equal(await within(5000, reason, "disconnect from the UI"), "io server disconnect");
  // The click also opens the socket's details (the row's own click handler): back to the list, where
  // the row is gone.
  await goto(page, "#/sockets/");
  await page.waitForFunction(
    (id) =>
      window.location.hash === "#/sockets/" &&
      document.querySelector(".v-breadcrumbs")?.textContent.includes("Sockets") &&
      ![...document.querySelectorAll("tbody tr td:first-child")].some((td) => td.textContent.trim() === id),
    idB,
  );
  await goto(page, "#/rooms/");
  await page.locator("tbody tr", { hasText: "room-a" }).waitFor();
  await page.locator("tbody tr", { hasText: "room-b" }).waitFor({ state: "detached" });
  await shot(page, "07-after-disconnect");
  await page.context().close();
});

test("readonly hides the disconnect buttons; production shows Dashboard and Servers only", async () => {
  const ro = await startSwitchyard({ SWITCHYARD_ADMIN_READONLY: "true", SWITCHYARD_ADMIN_UI_DIR: uiDir });
  const client = await connected(connect(ro.url));
  let page = await newPage();
  await login(page, ro);
  await page.locator(".v-chip", { hasText: /^\s*connected\s*$/i }).first().waitFor();
  await goto(page, "#/sockets/");
  await page.locator("tbody tr", { hasText: client.id }).waitFor();
  assert.equal(await page.locator("tbody i.mdi-logout").count(), 0);
  await shot(page, "08-readonly-sockets");
  await page.context().close();

  const prod = await startSwitchyard({ SWITCHYARD_ADMIN_MODE: "production", SWITCHYARD_ADMIN_UI_DIR: uiDir });
  await connected(connect(prod.url));
  page = await newPage();
  await login(page, prod);
  await page.locator(".v-chip", { hasText: /^\s*connected\s*$/i }).first().waitFor();
  const nav = page.locator("nav .v-list-item__title");
  await nav.first().waitFor();
  assert.deepEqual((await nav.allInnerTexts()).map((t) => t.trim()), ["Dashboard", "Servers"]);
  await shot(page, "09-production-nav");
  await page.context().close();
});
