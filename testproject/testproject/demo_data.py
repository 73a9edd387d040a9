"""The demo's conversations, its users, and loading one into a store."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from django_convstore.backends.base import BaseStore

# (username, password, is_staff/is_superuser)
DEMO_USERS: list[tuple[str, str, bool]] = [
    ("alice", "alice", False),
    ("bob", "bob", False),
    ("admin", "admin", True),
]

DEMO_CONVERSATIONS: list[dict[str, Any]] = [
    {
        "conversation_id": "demo-trip-to-lisbon",
        "owner": "alice",
        "metadata": {"title": "Planning a weekend in Lisbon", "channel": "web", "model": "gpt-4o"},
        "ttl": 0,
        "messages": [
            {
                "role": "system",
                "content": "You are a friendly travel assistant. Keep answers short.",
            },
            {
                "role": "user",
                "content": "I have a long weekend in Lisbon in May. Where should I stay?",
            },
            {
                "role": "assistant",
                "content": "Alfama for atmosphere, Chiado for shops and cafés, or Príncipe Real "
                "for quiet streets. All three are walkable to the river.",
            },
            {"role": "user", "content": "Chiado sounds good. Two things I must not miss?"},
            {
                "role": "assistant",
                "content": "Sunset at Miradouro de Santa Catarina, and tram 28 early in the "
                "morning before the queues. Pastéis de nata at Manteigaria, too.",
            },
        ],
    },
    {
        "conversation_id": "demo-python-help",
        "owner": "alice",
        "metadata": {"title": "Sorting a list of dicts", "channel": "ide"},
        "ttl": 0,
        "messages": [
            {
                "role": "user",
                "content": "How do I sort a list of dicts by the 'age' key in Python?",
            },
            {
                "role": "assistant",
                "content": "Use sorted(people, key=lambda p: p['age']), or "
                "operator.itemgetter('age') as the key.",
            },
            {"role": "user", "content": "And descending?"},
            {
                "role": "assistant",
                "content": "Pass reverse=True: "
                "sorted(people, key=itemgetter('age'), reverse=True).",
            },
        ],
    },
    {
        "conversation_id": "demo-support-refund-4711",
        "owner": "bob",
        "metadata": {"title": "Refund for order #4711", "channel": "support", "priority": "high"},
        "ttl": 7 * 24 * 3600,
        "messages": [
            {"role": "system", "content": "You are the support assistant of an online shop."},
            {"role": "user", "content": "My order #4711 arrived broken. Can I get a refund?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_refund_4711",
                        "type": "function",
                        "function": {
                            "name": "open_refund_request",
                            "arguments": '{"order": "4711", "reason": "arrived broken"}',
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "name": "open_refund_request",
                "tool_call_id": "call_refund_4711",
                "content": '{"refund_request": "R-2291", "status": "opened"}',
            },
            {
                "role": "assistant",
                "content": "I'm sorry about that! I have opened refund request R-2291. "
                "You'll get an email with a prepaid return label.",
            },
            {"role": "user", "content": "Thanks, how long does it take?"},
            {
                "role": "assistant",
                "content": "Refunds reach your card 3 to 5 business days after we receive the "
                "parcel.",
            },
        ],
    },
    {
        "conversation_id": "demo-weather-photo",
        "owner": "alice",
        "metadata": {"title": "Weather where this photo was taken", "channel": "mobile"},
        "ttl": 0,
        "messages": [
            {
                "role": "developer",
                "content": "Answer with the weather tool; never guess the weather.",
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's the weather where I took this photo?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/photos/lisbon-tram-28.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "That is tram 28 in Lisbon. Let me check the weather there.",
                "tool_calls": [
                    {
                        "id": "call_weather_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "name": "get_weather",
                "tool_call_id": "call_weather_1",
                "content": '{"city": "Lisbon", "temp_c": 21, "sky": "sunny"}',
            },
            {
                "role": "assistant",
                "content": "It is 21 °C and sunny in Lisbon: a good day to ride the tram.",
            },
        ],
    },
    {
        "conversation_id": "demo-recipe-ideas",
        "owner": "bob",
        "metadata": {"title": "Dinner with what's in the fridge", "channel": "mobile"},
        "ttl": 3600,
        "messages": [
            {
                "role": "user",
                "content": "I have eggs, spinach, feta and half an onion. Dinner ideas?",
            },
            {
                "role": "assistant",
                "content": "A spinach and feta frittata: soften the onion, wilt the spinach, "
                "pour in the beaten eggs, crumble the feta and finish in the oven.",
            },
        ],
    },
]


def demo_owners() -> dict[str, str]:
    """Demo username -> owner string (the user's primary key, as the REST API sets it)."""
    users = get_user_model().objects.filter(username__in=[name for name, _, _ in DEMO_USERS])
    return {user.get_username(): str(user.pk) for user in users}


def load_demo_conversations(store: BaseStore, owners: dict[str, str]) -> int:
    """Save the demo conversations that ``store`` does not hold yet; how many were saved."""
    loaded = 0
    for demo in DEMO_CONVERSATIONS:
        if store.exists(demo["conversation_id"]):
            continue
        store.save(
            demo["conversation_id"],
            demo["messages"],
            ttl=demo["ttl"],
            metadata=demo["metadata"],
            owner=owners.get(demo["owner"]),
        )
        loaded += 1
    return loaded
