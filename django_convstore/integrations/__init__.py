"""Conversation memory for agent frameworks, over any conversation store.

One module per framework, each behind its own extra:

- :mod:`django_convstore.integrations.langchain` — ``ConvStoreChatMessageHistory``,
  a LangChain ``BaseChatMessageHistory`` (extra ``langchain``);
- :mod:`django_convstore.integrations.openai_agents` — ``ConvStoreSession``, an
  OpenAI Agents SDK session (extra ``openai-agents``);
- :mod:`django_convstore.integrations.llama_index` — ``ConvStoreChatStore``, a
  LlamaIndex ``BaseChatStore`` (extra ``llama-index``).

Each keeps the framework's objects exactly: the fields a
:class:`~django_convstore.types.Message` has (role, content, id, name,
tool calls, tool call id) carry what they can, so the admin and the REST API
show the conversation as any other, and the rest travels in the message's
``metadata`` under the framework's key. This package imports none of the
frameworks; only the module of a framework does.
"""
