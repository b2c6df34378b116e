"""A Django app with Django's own login, logout and password-change views and
its default session handling (database sessions, default cookie settings), for
the auditor's tests. Prints "listening on http://ADDR" once it serves.

Only two settings differ from a new project, neither about sessions: the
password hasher is MD5 (the auditor logs in hundreds of times; PBKDF2's million
iterations would take minutes), and templates come from memory.

Usage: python django_app.py DB_PATH USERNAME PASSWORD
"""
import os
import sys

import django
from django.conf import settings

db, username, password = sys.argv[1], sys.argv[2], sys.argv[3]
settings.configure(
    DEBUG=False,
    SECRET_KEY=os.urandom(32).hex(),
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    LOGIN_URL="/accounts/login/",
    LOGIN_REDIRECT_URL="/me/",
    LOGOUT_REDIRECT_URL="/accounts/login/",
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [
                    (
                        "django.template.loaders.locmem.Loader",
                        {
                            "login.html": '<form method="post">{% csrf_token %}{{ form }}</form>',
                            "password.html": '<form method="post">{% csrf_token %}{{ form }}</form>',
                        },
                    )
                ]
            },
        }
    ],
)
django.setup()

from django.contrib.auth import views as auth_views  # noqa: E402
from django.contrib.auth.decorators import login_required  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


@login_required
def me(request):
    return HttpResponse(f"hello {request.user.username}")


urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(template_name="login.html")),
    path("accounts/logout/", auth_views.LogoutView.as_view()),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(template_name="password.html", success_url="/me/"),
    ),
    path("me/", me),
]

call_command("migrate", verbosity=0)
User.objects.create_user(username, password=password)

from wsgiref.simple_server import WSGIRequestHandler, make_server  # noqa: E402


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()
