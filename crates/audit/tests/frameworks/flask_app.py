"""A Flask app with Flask-Login's ordinary login, logout and a password change,
with Flask's default session (the signed client-side cookie) and Flask-Login's
defaults, for the auditor's tests. Prints "listening on http://ADDR" once it
serves.

Usage: python flask_app.py USERNAME PASSWORD
"""
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flask import Flask, redirect, request
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user

username, password = sys.argv[1], sys.argv[2]
passwords = {username: password}

app = Flask(__name__)
app.secret_key = os.urandom(32)
login_manager = LoginManager(app)


class User(UserMixin):
    def __init__(self, name):
        self.id = name


@login_manager.user_loader
def load_user(name):
    return User(name) if name in passwords else None


@app.post("/login")
def login():
    name = request.form.get("username", "")
    if passwords.get(name) is None or request.form.get("password") != passwords[name]:
        return "wrong username or password", 401
    login_user(User(name))
    return redirect("/me")


@app.get("/me")
@login_required
def me():
    return "hello"


@app.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect("/login")


@app.post("/password")
@login_required
def change_password():
    from flask_login import current_user

    if request.form.get("current_password") != passwords[current_user.id]:
        return "wrong password", 403
    passwords[current_user.id] = request.form["new_password"]
    return redirect("/me")


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()
