// An Express 5 app with express-session's ordinary login, logout and a password
// change, written as express-session's own README shows a user login
// (regenerate the session at login; at logout clear the user, save, and
// regenerate), with its defaults otherwise (MemoryStore, signed cookie
// `connect.sid`), for the auditor's tests. Prints "listening on http://ADDR"
// once it serves.
//
// Usage: node app.js USERNAME PASSWORD
'use strict';

const express = require('express');
const session = require('express-session');
const crypto = require('node:crypto');

const [username, password] = process.argv.slice(2);
const passwords = new Map([[username, password]]);

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(session({
  secret: crypto.randomBytes(32).toString('hex'),
  resave: false,
  saveUninitialized: true,
}));

function isAuthenticated(req, res, next) {
  if (req.session.user) next();
  else res.status(401).send('sign in first');
}

app.get('/login', (req, res) => {
  res.send('<form method="post" action="/login">…</form>');
});

app.post('/login', (req, res, next) => {
  const name = req.body.username || '';
  if (!passwords.has(name) || req.body.password !== passwords.get(name)) {
    res.status(401).send('wrong username or password');
    return;
  }
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.user = name;
    req.session.save((err) => {
      if (err) return next(err);
      res.redirect('/me');
    });
  });
});

app.get('/me', isAuthenticated, (req, res) => {
  res.send('hello ' + req.session.user);
});

app.post('/logout', (req, res, next) => {
  req.session.user = null;
  req.session.save((err) => {
    if (err) return next(err);
    req.session.regenerate((err) => {
      if (err) return next(err);
      res.redirect('/login');
    });
  });
});

app.post('/password', isAuthenticated, (req, res) => {
  if (req.body.current_password !== passwords.get(req.session.user)) {
    res.status(400).send('wrong current password');
    return;
  }
  passwords.set(req.session.user, req.body.new_password);
  res.send('password changed');
});

const server = app.listen(0, '127.0.0.1', () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});
