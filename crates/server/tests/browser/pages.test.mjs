// sessionguard's web pages in a real browser: Debian's Chromium driven by
// playwright-core, against a running `sessionguard serve`.
//
// Run by crates/server/tests/browser.rs, which starts the server and sets:
//   SG_URL          http://127.0.0.1:<port>, the server (its public origin)
//   SG_ADMIN_TOKEN  its admin token, to create the users of each scenario
//   SG_SCREENSHOTS  the folder for login.png and account.png
//   SG_CHROMIUM     the browser (default /usr/bin/chromium)
// The server's configuration has a profile `brief` with a 45 s idle timeout,
// for the idle-timeout warning, which runs in real time.
//
// Elements are found by their accessible names, the pages' public contract.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = mustEnv('SG_URL');
const ADMIN = mustEnv('SG_ADMIN_TOKEN');
const SHOTS = mustEnv('SG_SCREENSHOTS');
const CHROMIUM = process.env.SG_CHROMIUM || '/usr/bin/chromium';

// How Chromium runs here: headless, no sandbox (root), no GPU, and nothing that
// reaches for the network on its own. Playwright gives it a fresh profile
// (--user-data-dir) at every launch.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// User agents of the "other device" in two-browser scenarios.
const FIREFOX_ON_WINDOWS =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';

const PASSWORD = 'correct horse battery';

/** @type {import('playwright-core').Browser} */
let browser;
/** The "other website": a second local server, another origin. */
let evil;
let evilOrigin;

function mustEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this through crates/server/tests/browser.rs`);
  }
  return value;
}

const url = (p) => new URL(p, BASE).href;

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  evil = http.createServer(evilPage);
  await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
  evilOrigin = `http://127.0.0.1:${evil.address().port}`;
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (evil ? evil.close(resolve) : resolve()));
});

// ---------------------------------------------------------------------------
// Helpers

/** Creates a user through the admin API (with `profile`, if given); returns its name. */
async function createUser(username, profile) {
  const created = await api('POST', '/v1/admin/users', { username, password: PASSWORD });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  if (profile) {
    const id = created.body.id;
    const updated = await api('POST', `/v1/admin/users/${id}`, { profile });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
  }
  return username;
}

/** A JSON request with the admin token, as curl would send it. */
async function api(method, p, body, token = ADMIN) {
  const res = await fetch(url(p), {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** `GET /v1/auth` with `token` as the bearer, as a script or curl sends it. */
async function bearerAuth(token) {
  const res = await fetch(url('/v1/auth'), { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, headers: res.headers };
}

/**
 * A browser context whose pages are watched: console errors, uncaught
 * exceptions and Content-Security-Policy violations are collected. HTTP error
 * answers a scenario causes on purpose (a 401 for a wrong password, a 403 for a
 * refused form, a 401 from the idle script's poll of an ended session) are
 * logged by Chromium as "Failed to load resource" errors: each scenario lists
 * the ones it expects, and only those are tolerated.
 */
async function newContext(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, ...options });
  const problems = [];
  const allowed = [];
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  context.on('page', (page) => watch(page, problems));
  return {
    context,
    /** Tolerates "Failed to load resource" with `status` for a URL whose path is `pathname`. */
    allow(pathname, status) {
      allowed.push({ pathname, status });
    },
    async page() {
      const page = await context.newPage();
      return page;
    },
    /** Fails on every problem not allowed, then closes the context. */
    async close() {
      await context.close();
      const unexpected = problems.filter((p) => !isAllowed(p, allowed));
      assert.deepEqual(unexpected, [], 'console errors, page errors or CSP violations');
    },
  };
}

function watch(page, problems) {
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      problems.push({ text: msg.text(), url: msg.location().url || page.url() });
    }
  });
  page.on('pageerror', (err) => problems.push({ text: `uncaught: ${err.message}`, url: page.url() }));
}

function isAllowed(problem, allowed) {
  const m = /^Failed to load resource: the server responded with a status of (\d{3})/.exec(
    problem.text,
  );
  if (!m) {
    return false;
  }
  const pathname = new URL(problem.url).pathname;
  return allowed.some((a) => a.pathname === pathname && a.status === Number(m[1]));
}

/** Signs in through the form; returns the answer to the form's POST. */
async function signIn(page, username, password = PASSWORD, from = '/login') {
  if (!page.url().startsWith(url(from))) {
    await page.goto(url(from));
  }
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url() === url('/login') && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  await page.waitForLoadState();
  return answer;
}

/** The text of the page's main landmark. */
async function mainText(page) {
  return page.getByRole('main').innerText();
}

/** The sessions table's rows (the header row left out). */
function sessionRows(page) {
  return page
    .getByRole('table', { name: 'Your sessions' })
    .getByRole('row')
    .filter({ has: page.getByRole('cell') });
}

function assertPageHeaders(response) {
  const h = response.headers();
  const csp = h['content-security-policy'] || '';
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /style-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(h['referrer-policy'], 'same-origin');
  assert.equal(h['x-content-type-options'], 'nosniff');
}

/** The value of the session's anti-CSRF field on an account page. */
async function csrfToken(page) {
  return page.locator('input[name="csrf_token"]').first().inputValue();
}

// The other website's pages: forms that post to sessionguard from another
// origin (same site: 127.0.0.1, another port, so SameSite=Lax cookies go along
// and only the origin rule stands in the way).
function evilPage(req, res) {
  const u = new URL(req.url, 'http://evil');
  if (u.pathname === '/favicon.ico') {
    res.writeHead(204);
    res.end();
    return;
  }
  const csrf = (u.searchParams.get('csrf') || '').replace(/[^A-Za-z0-9_-]/g, '');
  const forms = {
    '/sign-out-others': `<form method="post" action="${url('/account/sessions/revoke-others')}">
        <input type="hidden" name="csrf_token" value="${csrf}">
        <button>Win a prize</button></form>`,
    '/password': `<form method="post" action="${url('/account/password')}">
        <input type="hidden" name="csrf_token" value="${csrf}">
        <input type="hidden" name="current_password" value="${PASSWORD}">
        <input type="hidden" name="new_password" value="attacker-chosen-password">
        <button>Win a prize</button></form>`,
    '/login': `<form method="post" action="${url('/login')}">
        <input type="hidden" name="username" value="${u.searchParams.get('username') || ''}">
        <input type="hidden" name="password" value="${PASSWORD}">
        <button>Win a prize</button></form>`,
  };
  const form = forms[u.pathname];
  res.writeHead(form ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><title>Prizes</title>${form || 'not here'}`);
}

// ---------------------------------------------------------------------------
// Scenarios

test('sign in: wrong password and unknown user refused alike, return_to honoured, off-site refused', async () => {
  const user = await createUser('ada');
  const b = await newContext();
  b.allow('/login', 401);
  const page = await b.page();

  const shown = await page.goto(url('/login?reason=idle_timeout'));
  assert.equal(shown.status(), 200);
  assertPageHeaders(shown);
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Sign in');
  assert.match(await mainText(page), /You were signed out because you were inactive for too long\./);
  await page.screenshot({ path: path.join(SHOTS, 'login.png') });

  // Nothing from the URL is echoed; unknown codes show nothing.
  await page.goto(url('/login?reason=%3Cb%3Ehacked%3C%2Fb%3E'));
  assert.doesNotMatch(await page.content(), /hacked/);
  assert.doesNotMatch(await mainText(page), /signed out/);

  let answer = await signIn(page, user, 'not the password');
  assert.equal(answer.status(), 401);
  assert.match(await mainText(page), /Wrong username or password/);
  assert.equal(await page.getByLabel('Username').inputValue(), user);
  answer = await signIn(page, 'nobody-by-this-name', 'not the password');
  assert.equal(answer.status(), 401);
  assert.match(await mainText(page), /Wrong username or password/);

  // A same-origin return_to is honoured...
  await page.goto(url('/login?return_to=/v1/session/status'));
  answer = await signIn(page, user, PASSWORD, '/login?return_to=/v1/session/status');
  assert.equal(answer.status(), 303);
  assert.equal(answer.headers().location, '/v1/session/status');
  assert.equal(new URL(page.url()).pathname, '/v1/session/status');
  assert.match(await page.textContent('body'), /"user_id"/);

  // ...an off-site one never: the form drops it, and a forged field is ignored.
  for (const target of ['https://evil.example/', '//evil.example/', '/\\evil.example']) {
    await page.goto(url(`/login?return_to=${encodeURIComponent(target)}`));
    assert.equal(await page.locator('input[name="return_to"]').count(), 0);
    await page.evaluate((t) => {
      const field = document.createElement('input');
      field.type = 'hidden';
      field.name = 'return_to';
      field.value = t;
      document.querySelector('form').append(field);
    }, target);
    answer = await signIn(page, user, PASSWORD, '/login');
    assert.equal(answer.status(), 303);
    assert.equal(answer.headers().location, '/account');
    assert.equal(page.url(), url('/account'));
  }

  // Usable with the keyboard alone: type, Tab, Enter.
  await page.goto(url('/login'));
  await page.getByLabel('Username').focus();
  await page.keyboard.type(user);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL(url('/account'));
  await b.close();
});

test('the pages work without JavaScript: sign in, account, sign out', async () => {
  const user = await createUser('noscript');
  const b = await newContext({ javaScriptEnabled: false });
  const page = await b.page();
  const account = await page.goto(url('/account'));
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal(new URL(page.url()).searchParams.get('return_to'), '/account');
  assert.equal(account.status(), 200);
  await signIn(page, user);
  assert.equal(page.url(), url('/account'));
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Your account');
  assert.equal(await sessionRows(page).count(), 1);
  await page.getByRole('banner').getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(url('/login?reason=logged_out'));
  assert.match(await mainText(page), /You signed out\./);
  await page.goto(url('/account'));
  assert.equal(new URL(page.url()).pathname, '/login');
  await b.close();
});

test('two browsers of one user: "Sign out" of the other row ends it and its next page says why', async () => {
  const user = await createUser('alice');
  const here = await newContext();
  const there = await newContext({ userAgent: FIREFOX_ON_WINDOWS });
  there.allow('/v1/session/status', 401);
  const a = await here.page();
  const b = await there.page();
  await signIn(a, user);
  await signIn(b, user);
  await a.reload();

  const rows = sessionRows(a);
  assert.equal(await rows.count(), 2);
  const mine = rows.filter({ hasText: 'This device' });
  assert.equal(await mine.count(), 1);
  assert.equal(await mine.getByRole('button', { name: 'Sign out' }).count(), 0);
  const other = rows.filter({ hasNotText: 'This device' });
  assert.match(await other.innerText(), /Firefox on Windows 10/);
  assert.match(await other.innerText(), /127\.0\.0\.1/);
  assert.match(await a.getByRole('region', { name: 'Recent security events' }).innerText(),
    /New sign-in from Firefox on Windows 10 \(127\.0\.0\.1\)\./);

  await other.getByRole('button', { name: 'Sign out' }).click();
  await a.waitForURL(/\/account\?notice=session_ended/);
  assert.match(await mainText(a), /The session was signed out\./);
  assert.equal(await sessionRows(a).count(), 1);

  await b.goto(url('/account'));
  assert.equal(new URL(b.url()).pathname, '/login');
  assert.match(await mainText(b),
    /You were signed out because this session was ended from your account page\./);

  // Signed in again (back to the account page), then "Sign out all other sessions".
  await signIn(b, user, PASSWORD, '/login');
  assert.equal(b.url(), url('/account'));
  await a.reload();
  await a.getByRole('button', { name: 'Sign out all other sessions' }).click();
  await a.waitForURL(/\/account\?notice=others_signed_out/);
  assert.match(await mainText(a), /All your other sessions were signed out\./);
  await b.goto(url('/account'));
  assert.match(await mainText(b),
    /You were signed out because you signed out of all your other sessions\./);
  await here.close();
  await there.close();
});

test('a password change in one browser signs the other out: "password was changed"', async () => {
  const user = await createUser('bob');
  const here = await newContext();
  const there = await newContext({ userAgent: FIREFOX_ON_WINDOWS });
  here.allow('/account/password', 401);
  there.allow('/v1/session/status', 401);
  there.allow('/login', 401);
  const a = await here.page();
  const b = await there.page();
  await signIn(a, user);
  await signIn(b, user);
  await a.reload();

  const section = a.getByRole('region', { name: 'Change password' });
  assert.match(await section.innerText(),
    /Changing your password signs you out of every other session and ends every API token\./);

  // A wrong current password changes nothing.
  await a.getByLabel('Current password').fill('not the password');
  await a.getByLabel('New password').fill('a brand new password');
  const [refused] = await Promise.all([
    a.waitForResponse((r) => r.url() === url('/account/password')),
    a.getByRole('button', { name: 'Change password' }).click(),
  ]);
  assert.equal(refused.status(), 401);
  assert.match(await mainText(a), /Your current password is wrong/);

  await a.getByLabel('Current password').fill(PASSWORD);
  await a.getByLabel('New password').fill('a brand new password');
  await a.getByRole('button', { name: 'Change password' }).click();
  await a.waitForURL(/\/account\?notice=password_changed/);
  assert.match(await mainText(a),
    /Your password was changed\. Every other session and every API token has ended\./);
  assert.equal(await sessionRows(a).count(), 1);
  assert.match(await a.getByRole('region', { name: 'Recent security events' }).innerText(),
    /Password changed/);

  await b.goto(url('/account'));
  assert.equal(new URL(b.url()).pathname, '/login');
  assert.match(await mainText(b), /You were signed out because your password was changed\./);
  const old = await signIn(b, user, PASSWORD);
  assert.equal(old.status(), 401);
  await signIn(b, user, 'a brand new password');
  assert.equal(b.url(), url('/account'));
  await here.close();
  await there.close();
});

test('the admin profile allows one session: the displaced browser is told, in words', async () => {
  const user = await createUser('carol', 'admin');
  const first = await newContext();
  const second = await newContext({ userAgent: FIREFOX_ON_WINDOWS });
  first.allow('/v1/session/status', 401);
  const a = await first.page();
  const b = await second.page();
  await signIn(a, user);
  assert.equal(a.url(), url('/account'));
  await signIn(b, user);
  assert.equal(b.url(), url('/account'));
  assert.equal(await sessionRows(b).count(), 1);

  await a.goto(url('/account'));
  assert.equal(new URL(a.url()).pathname, '/login');
  const text = await mainText(a);
  assert.match(text, /You were signed out because you signed in on another device\./);
  assert.match(text, /The new sign-in came from Firefox on Windows 10 \(127\.0\.0\.1\)\./);
  await first.close();
  await second.close();
});

test('API tokens: created and shown once, used like curl would, revoked, then refused', async () => {
  const user = await createUser('dave');
  const b = await newContext();
  await b.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const other = await newContext({ userAgent: FIREFOX_ON_WINDOWS });
  const page = await b.page();
  await signIn(await other.page(), user);
  await signIn(page, user);

  await page.getByLabel('Name').fill('deploy script');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.waitForURL(/\/account\?notice=token_created/);
  assert.match(await mainText(page), /Your API token was created\./);
  const token = await page.getByLabel('Your new token').inputValue();
  assert.match(token, /^sga_[A-Za-z0-9_-]{70}$/);

  // The copy button puts it on the clipboard.
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.getByText('Copied to the clipboard.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);

  const tokens = page.getByRole('table', { name: 'API tokens' });
  const row = tokens.getByRole('row', { name: /deploy script/ });
  assert.match(await row.innerText(), /Never/);

  // Used outside the browser as a bearer, as curl would: forward-auth accepts it
  // for its user, and the page now shows when it was last used.
  let answer = await bearerAuth(token);
  assert.equal(answer.status, 200);
  assert.equal(answer.headers.get('x-auth-username'), user);
  answer = await api('POST', '/v1/introspect', { token });
  assert.equal(answer.status, 200);
  assert.equal(answer.body.active, true);

  // Shown once: never again.
  await page.reload();
  assert.equal(await page.getByLabel('Your new token').count(), 0);
  assert.doesNotMatch(await page.content(), new RegExp(token));
  await page.goto(url('/account'));
  await page.screenshot({ path: path.join(SHOTS, 'account.png'), fullPage: true });

  await row.getByRole('button', { name: 'Revoke' }).click();
  await page.waitForURL(/\/account\?notice=token_revoked/);
  assert.match(await mainText(page), /The API token was revoked\./);
  assert.match(await mainText(page), /You have no API tokens\./);
  // Revoked: refused as a bearer, with the reason, and inactive.
  answer = await bearerAuth(token);
  assert.equal(answer.status, 401);
  assert.equal(answer.headers.get('x-auth-reason'), 'revoked_by_user');
  answer = await api('POST', '/v1/introspect', { token });
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { active: false });
  await b.close();
  await other.close();
});

test('idle warning: shown before the deadline, "Stay signed in" keeps the session, running out lands on the login page', async () => {
  const user = await createUser('erin', 'brief');
  const b = await newContext();
  // The script's poll may land just after the deadline when its timer runs late
  // (a busy machine, a sleeping laptop): the server answers 401 and the script
  // leaves with that answer's reason, which is the same idle timeout.
  b.allow('/v1/session/status', 401);
  const page = await b.page();
  await signIn(page, user);
  assert.equal(page.url(), url('/account'));
  const status = async () => {
    const res = await page.request.get(url('/v1/session/status'));
    return { status: res.status(), body: await res.json() };
  };
  const before = await status();
  assert.equal(before.status, 200);

  // The warning: an alertdialog, focus on its button, a countdown.
  const dialog = page.getByRole('alertdialog', { name: 'Are you still there?' });
  await dialog.waitFor({ state: 'visible', timeout: 60_000 });
  assert.equal((await status()).status, 200, 'the warning comes before the deadline');
  assert.match(await dialog.innerText(), /signed out in \d+ seconds?/);
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Stay signed in');

  // Answered with the keyboard: the session is extended.
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden', timeout: 10_000 });
  const extended = await status();
  assert.equal(extended.status, 200);
  assert.ok(Date.parse(extended.body.idle_expires_at) > Date.parse(before.body.idle_expires_at));
  // Still alive once the first deadline has passed.
  const firstDeadline = Date.parse(before.body.idle_expires_at) + 1500;
  await page.waitForTimeout(Math.max(0, firstDeadline - Date.now()));
  assert.equal((await status()).status, 200, 'alive after the first deadline');

  // Left alone: the warning again, then the login page with the idle reason.
  await dialog.waitFor({ state: 'visible', timeout: 60_000 });
  // Escape is not an answer: the warning stays.
  await page.keyboard.press('Escape');
  assert.equal(await dialog.isVisible(), true);
  await page.waitForURL(url('/login?reason=idle_timeout'), { timeout: 30_000 });
  assert.match(await mainText(page), /You were signed out because you were inactive for too long\./);
  assert.equal((await status()).status, 401);
  await b.close();
});

test('forms posted from another origin are refused; a same-origin form with a wrong token too', async () => {
  const user = await createUser('frank');
  const victim = await newContext();
  const elsewhere = await newContext({ userAgent: FIREFOX_ON_WINDOWS });
  victim.allow('/account/sessions/revoke-others', 403);
  victim.allow('/account/password', 403);
  const page = await victim.page();
  await signIn(await elsewhere.page(), user);
  await signIn(page, user);
  const csrf = await csrfToken(page);

  // Even with the right anti-CSRF token, the origin rule refuses.
  for (const [form, target] of [
    ['/sign-out-others', '/account/sessions/revoke-others'],
    ['/password', '/account/password'],
  ]) {
    await page.goto(`${evilOrigin}${form}?csrf=${csrf}`);
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url() === url(target)),
      page.getByRole('button', { name: 'Win a prize' }).click(),
    ]);
    assert.equal(answer.status(), 403);
    await page.waitForLoadState();
    assert.match(await mainText(page), /This form was sent from another website/);
  }
  await page.goto(url('/account'));
  assert.equal(await sessionRows(page).count(), 2, 'nothing was signed out');

  // A same-origin form with a wrong anti-CSRF token is refused too.
  await page.locator('#sessions input[name="csrf_token"]').last().evaluate((e) => {
    e.value = 'forged';
  });
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url() === url('/account/sessions/revoke-others')),
    page.getByRole('button', { name: 'Sign out all other sessions' }).click(),
  ]);
  assert.equal(answer.status(), 403);
  assert.match(await mainText(page), /This form is out of date/);
  await page.goto(url('/account'));
  assert.equal(await sessionRows(page).count(), 2, 'still nothing signed out');

  // Login CSRF: another site cannot sign a browser in as someone else.
  const fresh = await newContext();
  fresh.allow('/login', 403);
  const p = await fresh.page();
  await p.goto(`${evilOrigin}/login?username=${user}`);
  const [login] = await Promise.all([
    p.waitForResponse((r) => r.url() === url('/login')),
    p.getByRole('button', { name: 'Win a prize' }).click(),
  ]);
  assert.equal(login.status(), 403);
  await p.goto(url('/account'));
  assert.equal(new URL(p.url()).pathname, '/login', 'not signed in');

  // The password is unchanged: it still signs in.
  const check = await signIn(p, user);
  assert.equal(check.status(), 303);
  await fresh.close();
  await victim.close();
  await elsewhere.close();
});
