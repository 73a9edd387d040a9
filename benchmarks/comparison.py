"""Our Redis store against the original algorithm, the raw redis-py floor and the Python peers.

All systems (see :mod:`.peers`) run on the same Redis server, with the same
messages and the same TTL; each makes its calls in a row after an untimed
warm-up call. For each conversation length: ``save`` (replace with as
many messages; the peers have no such call), ``append`` (one message),
``load`` (everything, parsed into each library's own message objects),
``load(last=20)`` (the original reads the whole blob and slices; LangChain
has no windowed read) and ``delete`` (LangChain ``clear()``, Agents SDK
``clear_session()``). Ratios are *their median ÷ ours*: above 1 we are faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django_convstore.backends.base import BaseStore

from .environment import Backend, redis_counter
from .matrix import large_batches
from .peers import (
    AgentsSession,
    LangChainHistory,
    OriginalRedis,
    Ours,
    RawFloor,
    System,
    agents_available,
    langchain_available,
)
from .plan import Plan
from .section import Section, Table
from .workload import (
    Latency,
    cycle,
    message,
    messages,
    microseconds,
    one_after_another,
    ratio,
    size_label,
)

OPERATIONS = ("save", "append", "load", "load(last=20)", "delete")
SHORT = {
    "original": "original",
    "floor": "floor",
    "langchain": "LangChain",
    "openai-agents": "OpenAI Agents",
}


def supports(system: System, op: str) -> bool:
    """Whether ``system`` offers ``op``."""
    if op == "save":
        return system.has_save
    if op == "load(last=20)":
        return system.has_load_last
    return True


def build_systems(backend: Backend, store: BaseStore) -> tuple[list[System], list[str]]:
    """Ours, the original, the floor, and whichever peers are installed (with skip notes)."""
    url = backend.config("x")["LOCATION"]
    systems: list[System] = [
        Ours(store),
        OriginalRedis(url, "original"),
        RawFloor(url, "floor"),
    ]
    notes = []
    reason = langchain_available()
    if reason is None:
        systems.append(LangChainHistory(url, "langchain"))
    else:
        notes.append(f"LangChain `RedisChatMessageHistory` skipped: {reason}.")
    reason = agents_available()
    if reason is None:
        systems.append(AgentsSession(url, "agents"))
    else:
        notes.append(f"OpenAI Agents SDK `RedisSession` skipped: {reason}.")
    notes.append(
        "`langchain-redis` (the partner package's `RedisChatMessageHistory`) is not "
        "measured: it is deprecated since 0.2.6 and needs the RediSearch module (Redis "
        "Stack or Redis 8); a plain `redis-server` 7 answers its `FT.*` commands with "
        "an error."
    )
    return systems, notes


def system_operations(
    system: System, tag: str, content: list[dict[str, Any]], pool: list[str], doomed: list[str]
) -> dict[str, Callable[[], object]]:
    """The five measured calls of ``system`` at one length."""
    one = system.prepare([message(1)])
    next_read, next_append, next_doomed = cycle(pool), cycle(pool), iter(doomed)
    return {
        "save": lambda: system.save(f"s{tag}", content),
        "append": lambda: system.append(next_append(), one),
        "load": lambda: system.load(next_read()),
        "load(last=20)": lambda: system.load_last(next_read(), 20),
        "delete": lambda: system.delete(next(next_doomed)),
    }


def measure_length(
    systems: list[System], length: int, plan: Plan
) -> dict[str, dict[str, tuple[Latency, int | None]]]:
    """``{operation: {system: (latency, round trips of one warm call)}}`` at ``length``."""
    calls = plan.calls_at(length)
    content = messages(0, length)
    pool_size = math.ceil((plan.max_calls + 2) / max(1, length // 10))
    results: dict[str, dict[str, tuple[Latency, int | None]]] = {op: {} for op in OPERATIONS}
    operations: dict[str, dict[str, Callable[[], object]]] = {op: {} for op in OPERATIONS}
    for system in systems:
        tag = f"{length}"
        pool = [f"p{tag}-{j}" for j in range(pool_size)]
        doomed = [f"d{tag}-{j}" for j in range(calls + 2)]  # warm-up, timed, counted
        for cid in [*pool, *doomed, f"s{tag}"]:
            system.fill(cid, content)
        ops = system_operations(system, tag, content, pool, doomed)
        for op, operation in ops.items():
            if supports(system, op):
                operations[op][system.name] = operation
    for op, by_system in operations.items():
        if op == "delete":  # each call consumes a prepared conversation
            latencies = one_after_another(by_system, calls=calls)
        else:
            latencies = one_after_another(
                by_system, calls=plan.max_calls, min_calls=calls, budget=plan.call_budget
            )
        for name, operation in by_system.items():
            with redis_counter() as tally:
                operation()
            results[op][name] = (latencies[name], tally.value)
    for system in systems:
        for j in range(pool_size):
            system.delete(f"p{length}-{j}")
        system.delete(f"s{length}")
    return results


def comparison_section(backends: list[Backend], plan: Plan) -> Section:
    """Ratios against the original, the floor and the peers at every conversation length."""
    section = Section(
        "baselines",
        "Redis: ours vs the original algorithm, the raw redis-py floor and the Python peers",
        "Same Redis server, same messages (about 300 bytes of JSON each), same TTL "
        "(2 hours). Each system makes its calls in a row after one untimed warm-up "
        "call (taking turns call by call would make a cheap call pay for the garbage "
        "and cold CPU caches an expensive neighbour leaves behind). Each cell: their median per "
        "call, and *their time ÷ ours* (above 1: we are faster; below 1: slower). "
        "*original*: the TypeScript library's algorithm re-implemented in Python (one "
        "JSON blob per conversation, `append` = `GET` + parse + add + serialise + "
        "`SETEX`). *floor*: raw redis-py doing the least work per operation (a list per "
        "conversation plus one sorted set; no metadata, no validation, no atomic "
        "bookkeeping). *LangChain*: `langchain_community` `RedisChatMessageHistory` "
        "(`add_messages`, `.messages`, `clear()`). *OpenAI Agents*: the Agents SDK's "
        "async `RedisSession` (`add_items`, `get_items`, `clear_session`) driven from "
        "one event loop. Peers return their own message objects, as their users get them.",
    )
    redis = next((b for b in backends if b.name == "redis"), None)
    if redis is None:
        section.notes.append("Skipped: the Redis backend is not part of this run.")
        return section
    store = redis.store("baselines")
    systems, notes = build_systems(redis, store)
    section.notes.extend(notes)
    names = [s.name for s in systems]
    data: dict[str, dict[str, dict[int, float]]] = {}
    trips: dict[str, dict[str, set[int]]] = {}
    rows: list[dict[str, object]] = []
    try:
        with large_batches():
            for length in plan.lengths:
                results = measure_length(systems, length, plan)
                for op in OPERATIONS:
                    ours = results[op]["ours"][0].median
                    row: dict[str, object] = {
                        "operation": op,
                        "messages": size_label(length),
                        "ours": microseconds(ours),
                    }
                    for name in names[1:]:
                        if name in results[op]:
                            theirs = results[op][name][0].median
                            row[SHORT[name]] = f"{microseconds(theirs)} · {ratio(theirs, ours)}"
                            data.setdefault(name, {}).setdefault(op, {})[length] = theirs / ours
                        else:
                            row[SHORT[name]] = "-"
                    rows.append(row)
                    for name, (_latency, count) in results[op].items():
                        if count is not None:
                            trips.setdefault(op, {}).setdefault(name, set()).add(count)
    finally:
        for system in systems:
            system.close()
    section.tables.append(Table("their median · their time ÷ ours", rows))
    trip_rows: list[dict[str, object]] = []
    for op in OPERATIONS:
        row = {"operation": op}
        for name in names:
            seen = sorted(trips.get(op, {}).get(name, set()))
            label = "ours" if name == "ours" else SHORT[name]
            row[label] = " to ".join(map(str, seen)) if seen else "-"
        trip_rows.append(row)
    section.tables.append(
        Table("round trips per call (warm; a range when it depends on the length)", trip_rows)
    )
    section.data["ratios"] = data
    section.data["lengths"] = list(plan.lengths)
    section.data["labels"] = {name: SHORT[name] for name in names[1:]}
    section.tables.append(
        Table(
            "where we are ahead or behind (their time ÷ ours over all lengths; "
            "ahead: always ≥ 1.1x, behind: always ≤ 0.9x)",
            summary_rows(section),
        )
    )
    return section


def summary_rows(section: Section) -> list[dict[str, Any]]:
    """Where we are ahead or behind, per baseline: the range of ratios over lengths."""
    rows: list[dict[str, Any]] = []
    labels = section.data.get("labels", {})
    for name, by_op in section.data.get("ratios", {}).items():
        for op, by_length in by_op.items():
            values = list(by_length.values())
            low, high = min(values), max(values)
            verdict = "ahead" if low >= 1.1 else ("behind" if high <= 0.9 else "mixed/par")
            rows.append(
                {
                    "baseline": labels.get(name, name),
                    "operation": op,
                    "their time ÷ ours": f"{low:.2f}x to {high:.2f}x",
                    "we are": verdict,
                }
            )
    return rows
