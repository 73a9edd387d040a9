"""A handful of realistic conversations for the demo."""

from __future__ import annotations

from typing import Any

DEMO_CONVERSATIONS: list[dict[str, Any]] = [
    {
        "conversation_id": "demo-trip-to-lisbon",
        "metadata": {"title": "Planning a weekend in Lisbon", "channel": "web", "model": "gpt-4o"},
        "ttl": 0,
        "messages": [
            ("system", "You are a friendly travel assistant. Keep answers short."),
            ("user", "I have a long weekend in Lisbon in May. Where should I stay?"),
            (
                "assistant",
                "Alfama for atmosphere, Chiado for shops and cafés, or Príncipe Real "
                "for quiet streets. All three are walkable to the river.",
            ),
            ("user", "Chiado sounds good. Two things I must not miss?"),
            (
                "assistant",
                "Sunset at Miradouro de Santa Catarina, and tram 28 early in the "
                "morning before the queues. Pastéis de nata at Manteigaria, too.",
            ),
        ],
    },
    {
        "conversation_id": "demo-support-refund-4711",
        "metadata": {"title": "Refund for order #4711", "channel": "support", "priority": "high"},
        "ttl": 7 * 24 * 3600,
        "messages": [
            ("system", "You are the support assistant of an online shop."),
            ("user", "My order #4711 arrived broken. Can I get a refund?"),
            (
                "assistant",
                "I'm sorry about that! I have opened refund request R-2291. "
                "You'll get an email with a prepaid return label.",
            ),
            ("tool", '{"refund_request": "R-2291", "status": "opened"}'),
            ("user", "Thanks, how long does it take?"),
            (
                "assistant",
                "Refunds reach your card 3 to 5 business days after we receive the parcel.",
            ),
        ],
    },
    {
        "conversation_id": "demo-python-help",
        "metadata": {"title": "Sorting a list of dicts", "channel": "ide"},
        "ttl": 0,
        "messages": [
            ("user", "How do I sort a list of dicts by the 'age' key in Python?"),
            (
                "assistant",
                "Use sorted(people, key=lambda p: p['age']), or "
                "operator.itemgetter('age') as the key.",
            ),
            ("user", "And descending?"),
            (
                "assistant",
                "Pass reverse=True: sorted(people, key=itemgetter('age'), reverse=True).",
            ),
        ],
    },
    {
        "conversation_id": "demo-recipe-ideas",
        "metadata": {"title": "Dinner with what's in the fridge", "channel": "mobile"},
        "ttl": 3600,
        "messages": [
            ("user", "I have eggs, spinach, feta and half an onion. Dinner ideas?"),
            (
                "assistant",
                "A spinach and feta frittata: soften the onion, wilt the spinach, "
                "pour in the beaten eggs, crumble the feta and finish in the oven.",
            ),
        ],
    },
]
