"""System checks for the CONVSTORE settings."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_convstore.checks import check_app_settings, check_stores

MEMORY = "django_convstore.backends.memory.MemoryStore"


def _ids(messages):
    return [m.id for m in messages]


def test_valid_configuration_has_no_messages():
    assert check_stores() == []
    assert check_app_settings() == []


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (["not", "a", "dict"], ["convstore.E001"]),
        ({"default": "memory"}, ["convstore.E002"]),
        ({"default": {"LOCATION": "x"}}, ["convstore.E003"]),
        ({"default": {"BACKEND": "nowhere.Store"}}, ["convstore.E004"]),
        ({"default": {"BACKEND": MEMORY, "OPTIONS": {"BOGUS": 1}}}, ["convstore.E006"]),
        ({"default": {"BACKEND": MEMORY, "TTL": "soon"}}, ["convstore.E006"]),
        ({"default": {"type": "memory", "max_conversations": 0}}, ["convstore.E006"]),
        ({"chat": {"BACKEND": MEMORY}}, ["convstore.W001"]),
    ],
)
def test_store_checks(setting, expected):
    with override_settings(CONVSTORE=setting, CONVSTORE_API_STORE="default"):
        assert _ids(check_stores()) == expected


def test_missing_optional_dependency(monkeypatch):
    from django_convstore.backends.memory import MemoryStore

    class NeedsSomething(MemoryStore):
        required_modules = (("surely_not_installed_module", "redis"),)

    monkeypatch.setattr("tests.test_checks.NeedsSomething", NeedsSomething, raising=False)
    with override_settings(CONVSTORE={"default": {"BACKEND": "tests.test_checks.NeedsSomething"}}):
        messages = check_stores()
    assert _ids(messages) == ["convstore.E005"]
    assert "pip install 'django-convstore[redis]'" in messages[0].hint


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"CONVSTORE_ROLES": []}, ["convstore.E010"]),
        ({"CONVSTORE_ROLES": "user"}, ["convstore.E010"]),
        ({"CONVSTORE_MAX_BATCH": 0}, ["convstore.E011"]),
        ({"CONVSTORE_API_MAX_BODY": "big"}, ["convstore.E011"]),
        ({"CONVSTORE_API_STORE": "missing"}, ["convstore.E012"]),
    ],
)
def test_app_setting_checks(overrides, expected):
    with override_settings(**overrides):
        assert _ids(check_app_settings()) == expected


def test_manage_py_check_reports_errors():
    with (
        override_settings(CONVSTORE={"default": {"BACKEND": "nowhere.Store"}}),
        pytest.raises(SystemCheckError, match=r"convstore\.E004"),
    ):
        call_command("check")
