// A small bridge between pytest and headless Chromium: one JSON request per stdin line,
// one JSON answer per stdout line ({"id", "ok", "result"} or {"id", "ok": false, "error"}).
//
// It drives Debian's Chromium (no browser download) through playwright-core. Each page gets
// its own browser context (its own cookies and storage: a separate user). Every page records
// its console errors, uncaught exceptions and websocket frames, so tests can read them.
//
//   node browser_driver.mjs            (CHROMIUM=/usr/bin/chromium by default)

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
];

const pages = new Map(); // name -> {context, page, log: {console, errors, sockets}}
let browser = null;

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function entry(name) {
  const found = pages.get(name);
  if (!found) throw new Error(`no page named ${JSON.stringify(name)}`);
  return found;
}

// The tests send page functions as source text ("(arg) => ..."); playwright needs a real
// function to call it with its argument (a string would be evaluated as an expression).
function pageFunction(source) {
  const fn = new Function(`return (${source});`)();
  if (typeof fn !== 'function') throw new Error(`not a function: ${source}`);
  return fn;
}

function record(page) {
  const log = { console: [], errors: [], sockets: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      log.console.push({ type: msg.type(), text: msg.text() });
    }
  });
  page.on('pageerror', (err) => log.errors.push(String(err && err.stack || err)));
  page.on('websocket', (ws) => {
    const socket = { url: ws.url(), sent: [], received: [], closed: false, error: null };
    log.sockets.push(socket);
    ws.on('framesent', (f) => socket.sent.push(String(f.payload)));
    ws.on('framereceived', (f) => socket.received.push(String(f.payload)));
    ws.on('socketerror', (e) => { socket.error = String(e); });
    ws.on('close', () => { socket.closed = true; });
  });
  return log;
}

const commands = {
  async launch() {
    if (!browser) {
      // playwright gives the browser a fresh temporary user-data dir and removes it on close.
      browser = await chromium.launch({ executablePath: EXECUTABLE, args: ARGS, headless: true });
    }
    return { version: browser.version() };
  },

  async open({ page: name, url, viewport, clock }) {
    if (pages.has(name)) throw new Error(`page ${name} already open`);
    const context = await browser.newContext({
      viewport: viewport || { width: 1100, height: 720 },
      deviceScaleFactor: 1,
    });
    if (clock) await context.clock.install();
    const page = await context.newPage();
    page.setDefaultTimeout(10000);
    const log = record(page);
    pages.set(name, { context, page, log });
    if (url) await page.goto(url, { waitUntil: 'load' });
    return null;
  },

  async goto({ page, url }) {
    const response = await entry(page).page.goto(url, { waitUntil: 'load' });
    return response ? response.status() : null;
  },

  async fill({ page, selector, value }) {
    await entry(page).page.locator(selector).fill(value);
    return null;
  },

  async press({ page, selector, key }) {
    await entry(page).page.locator(selector).press(key);
    return null;
  },

  async click({ page, selector }) {
    await entry(page).page.locator(selector).click();
    return null;
  },

  async text({ page, selector }) {
    return await entry(page).page.locator(selector).textContent();
  },

  async texts({ page, selector }) {
    return await entry(page).page.locator(selector).allTextContents();
  },

  async attribute({ page, selector, name }) {
    return await entry(page).page.locator(selector).getAttribute(name);
  },

  async visible({ page, selector }) {
    return await entry(page).page.locator(selector).isVisible();
  },

  async wait({ page, selector, state, timeoutMs }) {
    await entry(page).page.locator(selector).first().waitFor({ state: state || 'visible', timeout: timeoutMs });
    return null;
  },

  async waitFor({ page, expr, arg, timeoutMs }) {
    const handle = await entry(page).page.waitForFunction(pageFunction(expr), arg, { timeout: timeoutMs, polling: 50 });
    const value = await handle.jsonValue();
    await handle.dispose();
    return value;
  },

  async eval({ page, expr, arg }) {
    return await entry(page).page.evaluate(pageFunction(expr), arg);
  },

  async screenshot({ page, path, fullPage }) {
    await entry(page).page.screenshot({ path, fullPage: !!fullPage, animations: 'disabled' });
    return path;
  },

  async clock({ page, action, value }) {
    const clock = entry(page).page.clock;
    if (!['fastForward', 'runFor', 'pauseAt', 'resume'].includes(action)) {
      throw new Error(`unknown clock action ${action}`);
    }
    await clock[action](value);
    return null;
  },

  async log({ page }) {
    return entry(page).log;
  },

  async close({ page }) {
    const found = pages.get(page);
    if (found) {
      pages.delete(page);
      await found.context.close();
    }
    return null;
  },

  async quit() {
    for (const name of [...pages.keys()]) await commands.close({ page: name });
    if (browser) await browser.close();
    browser = null;
    return null;
  },
};

const input = createInterface({ input: process.stdin });
let queue = Promise.resolve();
input.on('line', (line) => {
  queue = queue.then(async () => {
    let request;
    try {
      request = JSON.parse(line);
    } catch (err) {
      write({ id: null, ok: false, error: `bad request: ${err.message}` });
      return;
    }
    const handler = commands[request.cmd];
    try {
      if (!handler) throw new Error(`unknown command ${request.cmd}`);
      const result = await handler(request);
      write({ id: request.id, ok: true, result: result === undefined ? null : result });
    } catch (err) {
      write({ id: request.id, ok: false, error: String(err && err.message || err) });
    }
    if (request.cmd === 'quit') process.exit(0);
  });
});
input.on('close', () => {
  queue.then(async () => {
    try { if (browser) await browser.close(); } finally { process.exit(0); }
  });
});
