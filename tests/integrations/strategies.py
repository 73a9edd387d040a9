"""Hypothesis strategies for the frameworks' own message objects, every field varied.

Values are JSON (what a chat history holds); text may be any Unicode except
lone surrogates. Ids are unique within a run (``unique_id``) or deliberately
unusable as message ids (empty, control characters, too long).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
SOME_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | TEXT
    | st.floats(allow_nan=False, allow_infinity=False)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
JSON_OBJECT = st.dictionaries(TEXT, JSON, max_size=3)

_ids = itertools.count()


@st.composite
def unique_id(draw: st.DrawFn) -> str:
    """An id no other draw of this process returns (with a random, printable tail)."""
    tail = draw(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=8))
    return f"id{next(_ids)}-{tail}"


#: Ids our messages cannot take as they are (they travel in the framework's metadata).
UNUSABLE_ID = st.sampled_from(["", "with\ncontrol", "x" * 300])
OPTIONAL_ID = st.none() | unique_id() | UNUSABLE_ID

# -- LangChain -------------------------------------------------------------------------------

LC_BLOCK = (
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})
    | st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": TEXT})}
    )
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["reasoning", "tool_use"])}, optional={"x": JSON}
    )
)
LC_CONTENT = (
    TEXT | st.lists(LC_BLOCK, max_size=3) | st.lists(TEXT | LC_BLOCK | JSON_OBJECT, max_size=3)
)
LC_TOOL_CALL = st.fixed_dictionaries(
    {"name": TEXT, "args": JSON_OBJECT, "id": st.none() | SOME_TEXT}
)
LC_INVALID_TOOL_CALL = st.fixed_dictionaries(
    {
        "name": st.none() | TEXT,
        "args": st.none() | TEXT,
        "id": st.none() | TEXT,
        "error": st.none() | TEXT,
    }
)
LC_USAGE = st.none() | st.fixed_dictionaries(
    {
        "input_tokens": st.integers(0, 10**6),
        "output_tokens": st.integers(0, 10**6),
        "total_tokens": st.integers(0, 10**6),
    },
    optional={"input_token_details": st.fixed_dictionaries({"cache_read": st.integers(0, 99)})},
)


def _base(**extra: Any) -> dict[str, Any]:
    return {
        "content": LC_CONTENT,
        "id": OPTIONAL_ID,
        "name": st.none() | TEXT,
        "additional_kwargs": JSON_OBJECT,
        "response_metadata": JSON_OBJECT,
        **extra,
    }


@st.composite
def langchain_message(draw: st.DrawFn) -> Any:
    """Any ``langchain_core`` message type, every field drawn."""
    from langchain_core import messages as lc

    kind = draw(
        st.sampled_from(
            [
                "human",
                "ai",
                "system",
                "developer",
                "tool",
                "function",
                "chat",
                "ai_chunk",
                "human_chunk",
                "tool_chunk",
                "remove",
            ]
        )
    )
    ai_fields = {
        "tool_calls": st.lists(LC_TOOL_CALL, max_size=2),
        "invalid_tool_calls": st.lists(LC_INVALID_TOOL_CALL, max_size=2),
        "usage_metadata": LC_USAGE,
    }
    tool_fields = {
        "tool_call_id": TEXT,
        "artifact": JSON,
        "status": st.sampled_from(["success", "error"]),
    }
    if kind == "human":
        return lc.HumanMessage(**draw(st.fixed_dictionaries(_base())))
    if kind == "human_chunk":
        return lc.HumanMessageChunk(**draw(st.fixed_dictionaries(_base())))
    if kind == "ai":
        return lc.AIMessage(**draw(st.fixed_dictionaries(_base(**ai_fields))))
    if kind == "ai_chunk":
        return lc.AIMessageChunk(**draw(st.fixed_dictionaries(_base(**ai_fields))))
    if kind == "system":
        return lc.SystemMessage(**draw(st.fixed_dictionaries(_base())))
    if kind == "developer":
        fields = draw(st.fixed_dictionaries(_base()))
        fields["additional_kwargs"]["__openai_role__"] = "developer"
        return lc.SystemMessage(**fields)
    if kind == "tool":
        return lc.ToolMessage(**draw(st.fixed_dictionaries(_base(**tool_fields))))
    if kind == "tool_chunk":
        return lc.ToolMessageChunk(**draw(st.fixed_dictionaries(_base(**tool_fields))))
    if kind == "function":
        return lc.FunctionMessage(**draw(st.fixed_dictionaries(_base(name=TEXT))))
    if kind == "chat":
        role = st.sampled_from(["user", "assistant", "critic", ""]) | TEXT
        return lc.ChatMessage(**draw(st.fixed_dictionaries(_base(role=role))))
    return lc.RemoveMessage(id=draw(unique_id()))


# -- OpenAI Agents SDK input items ---------------------------------------------------------------

OA_PART = (
    st.fixed_dictionaries({"type": st.just("input_text"), "text": TEXT})
    | st.fixed_dictionaries(
        {
            "type": st.just("output_text"),
            "text": TEXT,
            "annotations": st.just([]),
            "logprobs": st.just([]),
        }
    )
    | st.fixed_dictionaries(
        {"type": st.just("input_image"), "image_url": TEXT, "detail": st.just("auto")}
    )
)
OA_CONTENT = TEXT | st.lists(OA_PART, max_size=3)
OA_ITEM_ID = st.sampled_from(["__fake_id__", "msg_1", "fc_1", "rs_1", ""]) | unique_id()


def _item(required: dict[str, Any], optional: dict[str, Any] | None = None) -> Any:
    return st.fixed_dictionaries(required, optional=optional or {})


OA_ITEM = st.one_of(
    _item(
        {
            "role": st.sampled_from(["user", "assistant", "system", "developer"]),
            "content": OA_CONTENT,
        },
        {"type": st.just("message"), "id": OA_ITEM_ID, "status": st.just("completed")},
    ),
    _item(
        {
            "type": st.just("function_call"),
            "call_id": SOME_TEXT,
            "name": TEXT,
            "arguments": TEXT,
        },
        {"id": OA_ITEM_ID, "status": st.sampled_from(["completed", "in_progress"])},
    ),
    _item(
        {"type": st.just("function_call_output"), "call_id": TEXT, "output": OA_CONTENT},
        {"id": OA_ITEM_ID, "status": st.just("completed")},
    ),
    _item(
        {
            "type": st.just("reasoning"),
            "id": OA_ITEM_ID,
            "summary": st.lists(
                st.fixed_dictionaries({"type": st.just("summary_text"), "text": TEXT}),
                max_size=2,
            ),
        },
        {"encrypted_content": TEXT, "content": st.lists(JSON_OBJECT, max_size=1)},
    ),
    _item(
        {"type": st.just("custom_tool_call"), "call_id": SOME_TEXT, "name": TEXT, "input": TEXT},
        {"id": OA_ITEM_ID},
    ),
    _item(
        {
            "type": st.just("web_search_call"),
            "id": OA_ITEM_ID,
            "status": st.just("completed"),
            "action": st.fixed_dictionaries({"type": st.just("search"), "query": TEXT}),
        }
    ),
    _item({"type": st.just("item_reference"), "id": OA_ITEM_ID}),
    _item({"type": st.just("computer_call_output"), "call_id": TEXT, "output": JSON_OBJECT}),
    # Shapes this SDK version does not know (a newer one might), kept just as well.
    st.dictionaries(st.sampled_from(["type", "role", "content", "id", "call_id"]) | TEXT, JSON),
)

# -- LlamaIndex ---------------------------------------------------------------------------------


@st.composite
def llama_index_message(draw: st.DrawFn) -> Any:
    """A LlamaIndex ``ChatMessage``: every role, text and other blocks, tool-call kwargs."""
    from llama_index.core.base.llms import types as li

    block = st.one_of(
        st.builds(li.TextBlock, text=TEXT),
        st.builds(
            li.ImageBlock,
            url=st.sampled_from(["https://example.com/a.png", "https://example.com/b.jpg"]),
            detail=st.none() | st.just("low"),
        ),
        st.builds(li.ThinkingBlock, content=st.none() | TEXT, additional_information=JSON_OBJECT),
        st.builds(
            li.ToolCallBlock,
            tool_call_id=st.none() | TEXT,
            tool_name=TEXT,
            tool_kwargs=JSON_OBJECT | TEXT,
        ),
    )
    kwargs = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "tool_calls": st.lists(
                    st.fixed_dictionaries(
                        {
                            "id": SOME_TEXT,
                            "type": st.just("function"),
                            "function": st.fixed_dictionaries({"name": TEXT, "arguments": TEXT}),
                        }
                    ),
                    max_size=2,
                ),
                "tool_call_id": TEXT,
                "name": TEXT,
                "extra": JSON,
            },
        )
    )
    role = draw(st.sampled_from([role.value for role in li.MessageRole]))
    if draw(st.booleans()):
        return li.ChatMessage(role=role, content=draw(TEXT), additional_kwargs=kwargs)
    return li.ChatMessage(
        role=role, blocks=draw(st.lists(block, max_size=3)), additional_kwargs=kwargs
    )
