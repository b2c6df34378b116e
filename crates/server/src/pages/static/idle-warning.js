// sessionguard's idle-timeout warning.
//
// Include it on any page whose browser session sessionguard holds, served from
// the same origin as sessionguard's /v1 endpoints (or point it at them below):
//
//   <script src="/static/idle-warning.js" defer></script>
//
// It polls GET /v1/session/status, which never extends the session. Before the
// idle deadline (60 s before it, or a tenth of the idle timeout when that is
// shorter) it shows a dialog (role="alertdialog") with a countdown and a
// "Stay signed in" button; the button calls GET /v1/session, a check that counts
// as activity, which moves the deadline. At the deadline it goes to
// /login?reason=idle_timeout (absolute_timeout when the session's absolute
// deadline comes first); when a poll finds the session ended for another reason
// (signed out elsewhere, password changed, ...), to /login?reason=<that code>.
// Activity in other tabs is noticed by the polls, which come more often while
// the warning shows.
//
// Options, as data attributes of the script element:
//   data-status-url  the check that does not extend   (default /v1/session/status)
//   data-extend-url  the check that extends           (default /v1/session)
//   data-login-url   where to go when the session ends (default /login)
//
// It uses no inline style or script, so it runs under a strict
// Content-Security-Policy (script-src 'self'; connect-src 'self').
(function () {
  'use strict';

  var SECOND = 1000;
  var MAX_LEAD = 60 * SECOND;
  var MAX_POLL = 30 * SECOND;
  var RETRY = 5 * SECOND;

  var options = (document.currentScript && document.currentScript.dataset) || {};
  var statusUrl = options.statusUrl || '/v1/session/status';
  var extendUrl = options.extendUrl || '/v1/session';
  var loginUrl = options.loginUrl || '/login';

  var idleEnd = 0; // the idle deadline, on this browser's clock (ms)
  var absoluteEnd = 0; // the absolute deadline, likewise
  var lead = MAX_LEAD; // how long before the idle deadline the warning shows
  var pollTimer = null;
  var endTimer = null;
  var tickTimer = null;
  var dialog = null;
  var countdown = null;
  var stayButton = null;
  var returnFocus = null;
  var leaving = false;

  function clearTimers() {
    clearTimeout(pollTimer);
    clearTimeout(endTimer);
    clearInterval(tickTimer);
    tickTimer = null;
  }

  function leave(reason) {
    if (leaving) {
      return;
    }
    leaving = true;
    clearTimers();
    window.location.assign(loginUrl + '?reason=' + encodeURIComponent(reason));
  }

  // The server's clock minus this browser's, when they differ by more than the
  // Date header's whole seconds can tell; else 0.
  function skewOf(response) {
    var serverNow = Date.parse(response.headers.get('Date') || '');
    if (isNaN(serverNow)) {
      return 0;
    }
    var skew = serverNow - Date.now();
    return Math.abs(skew) > 2 * SECOND ? skew : 0;
  }

  // Learns the deadlines from a session answer. Its times are whole seconds and
  // a deadline lies within the second after the one written: the end of that
  // second is used, so the page never leaves before the server has ended it.
  function learn(response, session) {
    var idle = Date.parse(session.idle_expires_at);
    var absolute = Date.parse(session.absolute_expires_at);
    var lastSeen = Date.parse(session.last_seen_at);
    if (isNaN(idle) || isNaN(absolute)) {
      return false;
    }
    var skew = skewOf(response);
    idleEnd = idle + SECOND - skew;
    absoluteEnd = absolute + SECOND - skew;
    // The idle deadline is the last activity plus the idle timeout.
    var timeout = isNaN(lastSeen) ? 10 * MAX_LEAD : idle - lastSeen;
    lead = Math.min(MAX_LEAD, Math.max(SECOND, timeout / 10));
    return true;
  }

  // Asks `url` about the session: true when it is alive (deadlines learnt);
  // false after leaving for the login page because it has ended.
  function ask(url) {
    var init = {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' }
    };
    return fetch(url, init).then(function (response) {
      if (response.status === 401) {
        return response.json().then(
          function (problem) {
            var code = problem && typeof problem.code === 'string' ? problem.code : '';
            leave(/^[a-z_]{1,64}$/.test(code) ? code : 'invalid_token');
            return false;
          },
          function () {
            leave('invalid_token');
            return false;
          }
        );
      }
      if (!response.ok) {
        throw new Error('the session check answered ' + response.status);
      }
      return response.json().then(function (session) {
        if (!learn(response, session)) {
          throw new Error('the session check gave no deadlines');
        }
        return true;
      });
    });
  }

  function poll() {
    clearTimeout(pollTimer);
    ask(statusUrl).then(
      function (alive) {
        if (alive) {
          schedule();
        }
      },
      retry
    );
  }

  // The server could not be asked: try again soon; the deadline timers still run.
  function retry() {
    if (!leaving) {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(poll, RETRY);
    }
  }

  function schedule() {
    clearTimers();
    var now = Date.now();
    var idleFirst = idleEnd < absoluteEnd;
    var end = idleFirst ? idleEnd : absoluteEnd;
    var reason = idleFirst ? 'idle_timeout' : 'absolute_timeout';
    endTimer = setTimeout(function () {
      leave(reason);
    }, Math.max(0, end - now));
    var warnAt = idleEnd - lead;
    var warning = idleFirst && now >= warnAt;
    if (warning) {
      show();
    } else {
      hide();
    }
    var every = Math.min(MAX_POLL, Math.max(SECOND, warning ? lead / 6 : lead));
    var next = now < warnAt ? Math.min(every, warnAt - now) : every;
    pollTimer = setTimeout(poll, Math.max(0, next));
  }

  function build() {
    dialog = document.createElement('dialog');
    dialog.className = 'sg-idle-warning';
    dialog.setAttribute('role', 'alertdialog');
    dialog.setAttribute('aria-modal', 'true');
    dialog.setAttribute('aria-labelledby', 'sg-idle-warning-title');
    dialog.setAttribute('aria-describedby', 'sg-idle-warning-text');
    var title = document.createElement('h2');
    title.id = 'sg-idle-warning-title';
    title.textContent = 'Are you still there?';
    var text = document.createElement('p');
    text.id = 'sg-idle-warning-text';
    countdown = document.createElement('strong');
    text.append(
      'You have been inactive for a while. For your security, you will be signed out in ',
      countdown,
      '.'
    );
    stayButton = document.createElement('button');
    stayButton.type = 'button';
    stayButton.textContent = 'Stay signed in';
    stayButton.addEventListener('click', stay);
    // Escape does not dismiss the warning unanswered: the button is the answer.
    dialog.addEventListener('cancel', function (event) {
      event.preventDefault();
    });
    dialog.append(title, text, stayButton);
    document.body.append(dialog);
  }

  function tick() {
    var seconds = Math.max(0, Math.ceil((idleEnd - Date.now()) / SECOND));
    countdown.textContent = seconds === 1 ? '1 second' : seconds + ' seconds';
  }

  function show() {
    if (!dialog) {
      build();
    }
    if (!dialog.open) {
      returnFocus = document.activeElement;
      dialog.showModal();
      stayButton.focus();
    }
    tick();
    tickTimer = setInterval(tick, SECOND / 4);
  }

  function hide() {
    if (dialog && dialog.open) {
      dialog.close();
      if (returnFocus && typeof returnFocus.focus === 'function') {
        returnFocus.focus();
      }
      returnFocus = null;
    }
  }

  function stay() {
    stayButton.disabled = true;
    ask(extendUrl).then(
      function (alive) {
        stayButton.disabled = false;
        if (alive) {
          schedule();
        }
      },
      function () {
        // Not reached: the warning stays, and the button can be pressed again.
        stayButton.disabled = false;
        stayButton.focus();
      }
    );
  }

  document.addEventListener('visibilitychange', function () {
    // Background tabs run timers late: look again when the page is seen.
    if (!document.hidden && !leaving) {
      poll();
    }
  });
  poll();
})();
