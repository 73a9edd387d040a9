"""Settings for the test suite.

PostgreSQL is used when ``CONVSTORE_TEST_POSTGRES`` names a DSN; otherwise
SQLite. (The database backend's tests add a PostgreSQL leg of their own when
a server answers on 127.0.0.1:5432.)

Two more aliases serve the database backend's tests: ``sqlite``, a SQLite test
database in a file (an in-memory SQLite database shared between threads uses
table locks that fail at once instead of waiting, so the concurrency tests need
a file), and ``postgres`` when a PostgreSQL server answers. Their test
database names carry the process id, so test runs side by side never share one.
"""

from __future__ import annotations

import os
import tempfile
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
DATABASES: dict[str, dict[str, object]] = {
    "default": (
        _database_from_dsn(_postgres_dsn)
        if _postgres_dsn
        else {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",  # only the test database is used: a file, see below
            # A file, not Django's in-memory test database: the live-server tests'
            # request threads then each open their own connection. An in-memory one is
            # shared by all of them, and Python 3.12+'s sqlite3 refuses that concurrent use.
            "TEST": {
                "NAME": os.path.join(
                    tempfile.gettempdir(), f"convstore-test-default-{os.getpid()}.sqlite3"
                )
            },
            "OPTIONS": {"timeout": 30},
        }
    )
}


def _postgres_database() -> tuple[dict[str, object] | None, str]:
    """The PostgreSQL server for the database backend's tests, or why there is none."""
    if _postgres_dsn:
        database = _database_from_dsn(_postgres_dsn)
        where = "CONVSTORE_TEST_POSTGRES"
    else:
        database = _database_from_dsn("postgresql://postgres@127.0.0.1:5432/test")
        where = "127.0.0.1:5432"
    try:
        import psycopg

        psycopg.connect(
            host=str(database["HOST"]),
            port=int(str(database["PORT"])),
            user=str(database["USER"]),
            password=str(database["PASSWORD"]),
            dbname=str(database["NAME"]),
            connect_timeout=2,
        ).close()
    except Exception as exc:  # any failure means: no PostgreSQL leg
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, (
            f"no PostgreSQL server at {where} ({reason}); start one there or set "
            "CONVSTORE_TEST_POSTGRES to a DSN to run the PostgreSQL tests"
        )
    database["OPTIONS"] = {"connect_timeout": 5}
    database["TEST"] = {"NAME": f"test_convstore_{os.getpid()}", "DEPENDENCIES": []}
    return database, ""


DATABASES["sqlite"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": ":memory:",  # only the test database (a file) is ever used
    "TEST": {
        "NAME": os.path.join(tempfile.gettempdir(), f"convstore-test-{os.getpid()}.sqlite3"),
        "DEPENDENCIES": [],
    },
    "OPTIONS": {"timeout": 30},
}
_postgres, CONVSTORE_TEST_POSTGRES_SKIP_REASON = _postgres_database()
if _postgres is not None:
    DATABASES["postgres"] = _postgres


def _mysql_database() -> tuple[dict[str, object] | None, str]:
    """The MySQL/MariaDB server for the database backend's tests, or why there is none.

    ``CONVSTORE_TEST_MYSQL`` may name a DSN (``mysql://user:password@host:port/name``);
    otherwise root without a password on 127.0.0.1:3306, database ``test``.
    """
    url = urlparse(os.environ.get("CONVSTORE_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"))
    database: dict[str, object] = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": url.path.lstrip("/") or "test",
        "USER": url.username or "root",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 3306),
    }
    try:
        import MySQLdb

        MySQLdb.connect(
            host=str(database["HOST"]),
            port=int(str(database["PORT"])),
            user=str(database["USER"]),
            password=str(database["PASSWORD"]),
            database=str(database["NAME"]),
            connect_timeout=2,
        ).close()
    except Exception as exc:  # any failure (no driver, no server) means: no MySQL leg
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, (
            f"no MySQL/MariaDB server at {database['HOST']}:{database['PORT']} ({reason}); "
            "start one (and install the `mysql` extra) or set CONVSTORE_TEST_MYSQL to a DSN "
            "to run the MySQL tests"
        )
    database["OPTIONS"] = {"charset": "utf8mb4", "connect_timeout": 5}
    database["TEST"] = {
        "NAME": f"test_convstore_{os.getpid()}",
        "CHARSET": "utf8mb4",
        "COLLATION": "utf8mb4_unicode_ci",
        "DEPENDENCIES": [],
    }
    return database, ""


_mysql, CONVSTORE_TEST_MYSQL_SKIP_REASON = _mysql_database()
if _mysql is not None:
    DATABASES["mysql"] = _mysql

CONVSTORE = {
    "default": {"BACKEND": "django_convstore.backends.memory.MemoryStore"},
}

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
