"""Settings for the test suite.

PostgreSQL is used when ``CONVSTORE_TEST_POSTGRES`` names a DSN; otherwise
SQLite. (The database backend's tests add a PostgreSQL leg of their own when
a server answers on 127.0.0.1:5432.)
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

SECRET_KEY = "django-convstore-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_convstore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database_from_dsn(dsn: str) -> dict[str, object]:
    url = urlparse(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/") or "test",
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
    }


_postgres_dsn = os.environ.get("CONVSTORE_TEST_POSTGRES")
DATABASES = {
    "default": (
        _database_from_dsn(_postgres_dsn)
        if _postgres_dsn
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    )
}

CONVSTORE = {
    "default": {"BACKEND": "django_convstore.backends.memory.MemoryStore"},
}

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
