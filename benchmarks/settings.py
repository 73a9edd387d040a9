"""Minimal Django settings for the benchmark scripts (SQLite file in a temp dir)."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "benchmarks"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_convstore",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "CONVSTORE_BENCH_SQLITE",
            os.path.join(tempfile.gettempdir(), "convstore-bench.sqlite3"),
        ),
    }
}
CONVSTORE: dict[str, dict[str, object]] = {}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
