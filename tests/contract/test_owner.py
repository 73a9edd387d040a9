"""Contract: acting as an owner, enforced inside the store (design.md, "Acting as an owner")."""

from __future__ import annotations

import asyncio
import threading

import pytest

from django_convstore.exceptions import OwnerMismatchError

from .helpers import expired_conversation, msg


@pytest.fixture
def owned(store):
    """'a' belongs to alice, 'n' to nobody."""
    store.save(
        "a",
        [msg("alice 1", id="a1"), msg("alice 2", id="a2")],
        metadata={"k": "v"},
        owner="alice",
        ttl=900,
    )
    store.save("n", [msg("nobody", id="n1")], ttl=900)
    return store


def snapshot(store):
    return {cid: store.load(cid).to_dict() for cid in ("a", "n")}


@pytest.mark.parametrize("cid", ["a", "n"])
def test_reads_see_other_conversations_as_missing(owned, cid):
    assert owned.load(cid, owner="bob") is None
    assert owned.load(cid, owner="bob", last=1) is None
    assert owned.load(cid, owner="bob", include_expired=True) is None
    assert owned.exists(cid, owner="bob") is False
    assert owned.get_ttl(cid, owner="bob") == -2


def test_reads_for_the_owner_work(owned):
    assert [m.id for m in owned.load("a", owner="alice").messages] == ["a1", "a2"]
    assert owned.exists("a", owner="alice") is True
    assert 890 <= owned.get_ttl("a", owner="alice") <= 900
    assert [c.conversation_id for c in owned.iter_conversations(owner="alice")] == ["a"]
    assert list(owned.iter_conversations(owner="bob")) == []
    page = owned.list_conversations(owner="alice")
    assert [m.conversation_id for m in page.items] == ["a"] and page.total == 1


@pytest.mark.parametrize("cid", ["a", "n"])
def test_writes_to_others_change_nothing_and_raise(owned, cid):
    before = snapshot(owned)
    with pytest.raises(OwnerMismatchError) as info:
        owned.save(cid, [msg("takeover")], owner="bob", metadata={"k": "bob"})
    assert "alice" not in str(info.value)
    with pytest.raises(OwnerMismatchError):
        owned.append(cid, [msg("sneak")], owner="bob")
    assert snapshot(owned) == before


@pytest.mark.parametrize("cid", ["a", "n"])
def test_other_writes_to_others_return_the_missing_value(owned, cid):
    before = snapshot(owned)
    assert owned.delete(cid, owner="bob") is False
    assert owned.set_ttl(cid, 5, owner="bob") is False
    assert owned.update_metadata(cid, {"k": "bob"}, owner="bob") is None
    assert owned.update_metadata(cid, {}, replace=True, owner="bob") is None
    assert owned.pop(cid, owner="bob") == []
    assert owned.truncate(cid, 0, owner="bob") is None
    assert owned.create(cid, [msg("mine")], owner="bob") is None
    assert snapshot(owned) == before


def test_the_owner_can_do_everything(owned):
    saved = owned.save("a", [msg("new", id="x")], owner="alice", metadata={"j": 1})
    assert saved.metadata.owner == "alice" and saved.metadata.metadata == {"k": "v", "j": 1}
    assert owned.append("a", [msg("more", id="y")], owner="alice").message_count == 2
    assert [m.id for m in owned.pop("a", owner="alice")] == ["y"]
    assert owned.truncate("a", 0, owner="alice").message_count == 0
    assert owned.set_ttl("a", 60, owner="alice") is True
    assert owned.update_metadata("a", {"j": 2}, owner="alice").metadata == {"k": "v", "j": 2}
    assert owned.delete("a", owner="alice") is True
    assert owned.exists("a") is False


def test_creating_writes_set_the_owner(store):
    assert store.save("s", [msg("x")], owner="alice").metadata.owner == "alice"
    assert store.append("p", [msg("x")], owner="alice").owner == "alice"
    assert store.create("c", [msg("x")], owner="alice").metadata.owner == "alice"
    for cid in ("s", "p", "c"):
        assert store.load(cid).metadata.owner == "alice"
        assert store.load(cid, owner="alice") is not None


def test_unscoped_writes_keep_the_owner(owned):
    assert owned.save("a", [msg("staff edit")]).metadata.owner == "alice"
    assert owned.append("a", [msg("staff note")]).owner == "alice"
    assert owned.update_metadata("a", {"x": 1}).owner == "alice"
    assert owned.truncate("a", 1).owner == "alice"
    assert owned.load("a").metadata.owner == "alice"


def test_only_put_changes_an_owner(owned):
    moved = owned.load("a")
    moved.metadata.owner = "carol"
    owned.put(moved)
    assert owned.load("a").metadata.owner == "carol"
    assert owned.load("a", owner="alice") is None
    assert owned.list_conversations(owner="alice").total == 0
    assert owned.list_conversations(owner="carol").total == 1


def test_an_expired_conversation_of_another_owner_counts_as_missing(store):
    store.put(expired_conversation("old", ["theirs"], owner="alice"))
    meta = store.append("old", [msg("mine")], owner="bob")
    assert meta.owner == "bob" and meta.message_count == 1
    assert [m.content for m in store.load("old", owner="bob").messages] == ["mine"]
    store.put(expired_conversation("old2", ["theirs"], owner="alice"))
    assert store.save("old2", [msg("mine")], owner="bob").metadata.owner == "bob"
    store.put(expired_conversation("old3", ["theirs"], owner="alice"))
    assert store.create("old3", [msg("mine")], owner="bob").metadata.owner == "bob"


def test_async_twins_act_as_the_owner(owned):
    async def scenario():
        assert await owned.aload("a", owner="bob") is None
        assert await owned.aexists("a", owner="bob") is False
        assert await owned.aget_ttl("a", owner="bob") == -2
        with pytest.raises(OwnerMismatchError):
            await owned.asave("a", [msg("x")], owner="bob")
        with pytest.raises(OwnerMismatchError):
            await owned.aappend("a", [msg("x")], owner="bob")
        assert await owned.adelete("a", owner="bob") is False
        assert await owned.aset_ttl("a", 1, owner="bob") is False
        assert await owned.aupdate_metadata("a", {"x": 1}, owner="bob") is None
        assert await owned.apop("a", owner="bob") == []
        assert await owned.atruncate("a", 0, owner="bob") is None
        assert (await owned.aload("a", owner="alice")).metadata.owner == "alice"

    before = snapshot(owned)
    asyncio.run(scenario())
    assert snapshot(owned) == before


ROUNDS = 60


def _race(*calls):
    """Run the calls in threads released together; returns their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # the outcome under test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.slow
def test_create_racing_save_of_another_owner_never_takes_over(store):
    violations = 0
    for round_ in range(ROUNDS):
        cid = f"race-{round_}"
        created, saved = _race(
            lambda cid=cid: store.create(cid, [msg("alice", id="a")], owner="alice"),
            lambda cid=cid: store.save(cid, [msg("bob", id="b")], owner="bob"),
        )
        final = store.load(cid)
        if created is not None and not isinstance(created, Exception):
            ok = isinstance(saved, OwnerMismatchError) and final.metadata.owner == "alice"
            ok = ok and [m.id for m in final.messages] == ["a"]
        else:
            ok = created is None and not isinstance(saved, Exception)
            ok = ok and final.metadata.owner == "bob" and [m.id for m in final.messages] == ["b"]
        violations += not ok
    assert violations == 0


@pytest.mark.slow
def test_append_racing_delete_never_leaves_an_ownerless_conversation(store):
    violations = 0
    for round_ in range(ROUNDS):
        cid = f"race-{round_}"
        store.save(cid, [msg("first", id="f")], owner="alice")
        appended, _deleted = _race(
            lambda cid=cid: store.append(cid, [msg("more", id="m")], owner="alice"),
            lambda cid=cid: store.delete(cid, owner="alice"),
        )
        final = store.load(cid)
        if isinstance(appended, Exception) or (
            final is not None and final.metadata.owner != "alice"
        ):
            violations += 1
    assert violations == 0
