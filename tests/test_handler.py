"""The store handler, create_store (both config forms), settings and type guards."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished
from django.test import override_settings

import django_convstore
from django_convstore import (
    create_store,
    is_database_store,
    is_memory_store,
    is_redis_store,
    is_zerodb_store,
    store,
    stores,
)
from django_convstore.backends.memory import MemoryStore
from django_convstore.conf import app_settings

MEMORY = "django_convstore.backends.memory.MemoryStore"


def test_default_store_is_memory_without_setting():
    with override_settings():
        from django.conf import settings

        del settings.CONVSTORE
        stores.reset()
        try:
            assert isinstance(stores["default"], MemoryStore)
            assert list(stores.settings) == ["default"]
        finally:
            stores.reset()


def test_stores_are_per_alias_and_per_thread():
    with override_settings(CONVSTORE={"default": {"BACKEND": MEMORY}, "b": {"BACKEND": MEMORY}}):
        assert stores["default"] is stores["default"]
        assert stores["default"] is not stores["b"]
        other: list[object] = []
        thread = threading.Thread(target=lambda: other.append(stores["default"]))
        thread.start()
        thread.join()
        assert other[0] is not stores["default"]
        assert other[0].alias == "default"


def test_override_settings_resets_stores():
    with override_settings(CONVSTORE={"default": {"BACKEND": MEMORY, "TTL": 10}}):
        assert stores["default"].default_ttl == 10
        assert store.default_ttl == 10
    with override_settings(CONVSTORE={"default": {"BACKEND": MEMORY, "TTL": 20}}):
        assert stores["default"].default_ttl == 20


def test_unknown_alias_names_configured_ones():
    with pytest.raises(ImproperlyConfigured, match=r"\['nope'\] is not configured.*default"):
        stores["nope"]


def test_store_proxy_forwards_to_default():
    store.save("proxy", [{"role": "user", "content": "x"}])
    assert stores["default"].exists("proxy")
    store.delete("proxy")


def test_public_names():
    for name in django_convstore.__all__:
        assert hasattr(django_convstore, name)


@pytest.mark.django_db
def test_request_finished_closes_only_flagged_backends():
    closed: list[str] = []

    class Flagged(MemoryStore):
        closes_on_request_finished = True

        def _close(self) -> None:
            closed.append(self.display_alias)

    class Unflagged(MemoryStore):
        def _close(self) -> None:
            closed.append(self.display_alias)

    with override_settings(
        CONVSTORE={"default": {"BACKEND": Flagged}, "u": {"BACKEND": Unflagged}}
    ):
        stores["default"], stores["u"]
        request_finished.send(sender=None)
        assert closed == ["default"]
        stores.close_all()
        assert sorted(closed) == ["default", "default", "u"]


def test_app_settings_reload_on_change():
    assert app_settings.MAX_BATCH == 1000
    with override_settings(CONVSTORE_MAX_BATCH=5):
        assert app_settings.MAX_BATCH == 5
    assert app_settings.MAX_BATCH == 1000
    with pytest.raises(AttributeError):
        app_settings.NOT_A_SETTING  # noqa: B018


class TestCreateStore:
    def test_django_form(self):
        built = create_store(
            {"BACKEND": MEMORY, "TTL": 60, "NAMESPACE": "n", "OPTIONS": {"MAX_CONVERSATIONS": 5}}
        )
        assert isinstance(built, MemoryStore)
        assert (built.default_ttl, built.namespace, built.max_conversations) == (60, "n", 5)

    def test_backend_class_instead_of_path(self):
        assert isinstance(create_store({"BACKEND": MemoryStore}), MemoryStore)

    @pytest.mark.parametrize(
        "config",
        [
            {"type": "memory", "max_conversations": 7, "default_ttl": 30, "namespace": "x"},
            {"type": "memory", "maxConversations": 7, "defaultTTL": 30, "namespace": "x"},
        ],
    )
    def test_original_memory_form(self, config):
        built = create_store(config)
        assert (built.max_conversations, built.default_ttl, built.namespace) == (7, 30, "x")

    def test_original_form_zero_ttl_means_never(self):
        assert create_store({"type": "memory", "default_ttl": 0}).default_ttl is None

    @pytest.mark.parametrize(
        ("config", "pattern"),
        [
            ("memory", r"must be a dict"),
            ({}, r"BACKEND is required"),
            ({"type": "mongo"}, r"unknown store type 'mongo'.*database, memory, redis, zerodb"),
            ({"type": "memory", "maxSize": 3}, r"unknown option 'maxSize' for a memory store"),
            ({"type": "memory", "max_conversations": -1}, r"MAX_CONVERSATIONS"),
            ({"type": "memory", "max_conversations": "10"}, r"MAX_CONVERSATIONS"),
            ({"type": "memory", "default_ttl": -5}, r"TTL must be None or an integer"),
            ({"type": "memory", "default_ttl": "1h"}, r"TTL must be None or an integer"),
            ({"type": "memory", "namespace": ""}, r"NAMESPACE must be a non-empty string"),
            ({"BACKEND": "no.such.Backend"}, r"could not import BACKEND 'no.such.Backend'"),
            ({"BACKEND": "django_convstore.types.Message"}, r"is not a BaseStore subclass"),
            ({"BACKEND": MEMORY, "TIMEOUT": 5}, r"unknown key\(s\) TIMEOUT"),
            ({"BACKEND": MEMORY, "OPTIONS": {"MAX_ENTRIES": 5}}, r"unknown OPTIONS MAX_ENTRIES"),
            ({"BACKEND": MEMORY, "OPTIONS": []}, r"OPTIONS must be a dict"),
            ({"BACKEND": MEMORY, "LOCATION": 5}, r"LOCATION must be a string"),
        ],
    )
    def test_bad_configuration(self, config, pattern):
        with pytest.raises(ImproperlyConfigured, match=pattern):
            create_store(config)

    def test_errors_name_the_alias(self):
        with pytest.raises(
            ImproperlyConfigured, match=r"CONVSTORE\['chat'\]: .*MAX_CONVERSATIONS"
        ):
            create_store({"BACKEND": MEMORY, "OPTIONS": {"MAX_CONVERSATIONS": 0}}, alias="chat")
        with (
            override_settings(CONVSTORE={"default": {"BACKEND": MEMORY, "TTL": -1}}),
            pytest.raises(ImproperlyConfigured, match=r"CONVSTORE\['default'\]: TTL"),
        ):
            stores["default"]


def test_type_guards_tell_backends_apart():
    memory = create_store({"type": "memory"})
    assert is_memory_store(memory)
    assert not is_redis_store(memory)
    assert not is_zerodb_store(memory)
    assert not is_database_store(memory)


def test_store_is_a_context_manager():
    with create_store({"type": "memory"}) as built:
        built.save("c", [])
        assert built.exists("c")


class _NeedsAMissingPackage(MemoryStore):
    required_modules = (("no_such_module_for_convstore", "zerodb"),)


def test_create_store_names_the_extra_of_a_missing_package():
    with pytest.raises(ImproperlyConfigured) as info:
        create_store({"BACKEND": _NeedsAMissingPackage})
    message = str(info.value)
    assert "needs no_such_module_for_convstore, which is not installed" in message
    assert "pip install 'django-convstore[zerodb]'" in message
    assert "pip install no-such-module-for-convstore" in message
