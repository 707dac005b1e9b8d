"""Feed LangChain LLM and chat-model runs to a prodfast CallbackManager.

::

    from prodfast.integrations.langchain import ProdfastCallbackHandler

    handler = ProdfastCallbackHandler(manager)
    chat_model.invoke("hi", config={"callbacks": [handler]})   # or stream / ainvoke / astream
    manager.metrics()

Each LangChain run (its ``run_id``) becomes one prodfast run: ``on_llm_start`` /
``on_chat_model_start`` start it, ``on_llm_new_token`` reports streamed tokens (so time to
first token is measured), ``on_llm_end`` ends it with the generated text and the usage the
result reports (the messages' ``usage_metadata``, or ``llm_output["token_usage"]`` as
OpenAI-style models put it), and ``on_llm_error`` records the error. The model name is taken
from the run's metadata (``ls_model_name``), its invocation parameters (``model``,
``model_name``) or the model class's name.

For async chains, ``AsyncProdfastCallbackHandler`` does the same with the manager's async
hooks, so a rate-limit gate waits with ``await`` on the event loop instead of in one of the
worker threads LangChain runs sync handlers in.

The handler sets LangChain's ``raise_error`` so that a refusal from a rate-limit gate in the
manager (``RateLimitingCallback(block=False)``) reaches the caller, as the manager promises;
other callback failures are logged by the manager (or raised, with ``raise_errors=True``).
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

try:
    from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "prodfast.integrations.langchain needs langchain-core: pip install 'prodfast[langchain]'"
    ) from exc

from ..monitor import CallbackManager, Run
from ..monitor.usage import InputOnlyUsage, _normalize_usage, extract_response_model

__all__ = ["ProdfastCallbackHandler", "AsyncProdfastCallbackHandler"]


def _model_name(serialized, kwargs):
    metadata = kwargs.get("metadata") or {}
    name = metadata.get("ls_model_name")
    if name:
        return str(name)
    params = kwargs.get("invocation_params") or {}
    for key in ("model", "model_name", "model_id"):
        if params.get(key):
            return str(params[key])
    serialized = serialized or {}
    inner = serialized.get("kwargs") or {}
    for key in ("model", "model_name"):
        if inner.get(key):
            return str(inner[key])
    if serialized.get("name"):
        return str(serialized["name"])
    ids = serialized.get("id") or ()
    return str(ids[-1]) if ids else "unknown"


def _usage_of(response):
    """Sum the usage the generations' messages report; else llm_output's token usage."""
    totals = None
    output = False  # did any of them report output tokens
    for generations in getattr(response, "generations", None) or ():
        for gen in generations:
            message = getattr(gen, "message", None)
            meta = getattr(message, "usage_metadata", None)
            if not meta:
                continue
            usage = _normalize_usage(meta, "usage_metadata")
            if usage is None:
                continue
            if totals is None:
                totals = dict.fromkeys(usage, 0)
            for key, value in usage.items():
                totals[key] += value
            output = output or type(usage) is not InputOnlyUsage
    if totals is not None:
        return totals if output else InputOnlyUsage(totals)
    output = getattr(response, "llm_output", None) or {}
    for key in ("token_usage", "usage"):
        if output.get(key):
            return _normalize_usage(output[key], f"llm_output[{key!r}]")
    return None


def _response_model_of(response):
    """The model that answered: llm_output's ``model_name``, else a generation message's."""
    output = getattr(response, "llm_output", None) or {}
    name = output.get("model_name") if isinstance(output, dict) else None
    if type(name) is str and name:
        return name
    for generations in getattr(response, "generations", None) or ():
        for gen in generations:
            name = extract_response_model(getattr(gen, "message", None))
            if name is not None:
                return name
    return None


def _text_of(response):
    texts = [
        gen.text
        for generations in getattr(response, "generations", None) or ()
        for gen in generations
    ]
    if len(texts) == 1:
        return texts[0]
    return texts


class ProdfastCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler that reports every LLM / chat-model run to ``manager``."""

    raise_error = True  # a gate's RateLimitError must reach the caller

    def __init__(self, manager: CallbackManager) -> None:
        if not isinstance(manager, CallbackManager):
            raise TypeError(f"manager must be a CallbackManager, got {type(manager).__name__}")
        self.manager = manager
        self._runs: dict[UUID, Run] = {}
        self._lock = threading.Lock()

    def _start(self, model, prompt, run_id):
        run = self.manager.start(model, prompt, run_id=run_id)
        with self._lock:
            self._runs[run_id] = run

    def _pop(self, run_id):
        with self._lock:
            return self._runs.pop(run_id, None)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     **kwargs: Any) -> None:
        prompt = prompts[0] if len(prompts) == 1 else list(prompts)
        self._start(_model_name(serialized, kwargs), prompt, run_id)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                            run_id: UUID, **kwargs: Any) -> None:
        prompt = messages[0] if len(messages) == 1 else list(messages)
        self._start(_model_name(serialized, kwargs), prompt, run_id)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            run.new_token(token)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is None:
            return
        try:
            usage = _usage_of(response)
        except (TypeError, ValueError):
            usage = None
        run.end(_text_of(response), usage=usage, response_model=_response_model_of(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is not None:
            run.error(error)

    @property
    def in_flight(self) -> int:
        """How many runs have started and not yet ended."""
        with self._lock:
            return len(self._runs)


class AsyncProdfastCallbackHandler(AsyncCallbackHandler):
    """``ProdfastCallbackHandler`` for async chains: awaits the manager's async hooks."""

    raise_error = True  # a gate's RateLimitError must reach the caller

    def __init__(self, manager: CallbackManager) -> None:
        if not isinstance(manager, CallbackManager):
            raise TypeError(f"manager must be a CallbackManager, got {type(manager).__name__}")
        self.manager = manager
        self._runs: dict[UUID, Run] = {}
        self._lock = threading.Lock()

    async def _start(self, model, prompt, run_id):
        run = await self.manager.astart(model, prompt, run_id=run_id)
        with self._lock:
            self._runs[run_id] = run

    def _pop(self, run_id):
        with self._lock:
            return self._runs.pop(run_id, None)

    async def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                           **kwargs: Any) -> None:
        prompt = prompts[0] if len(prompts) == 1 else list(prompts)
        await self._start(_model_name(serialized, kwargs), prompt, run_id)

    async def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[Any]], *,
                                  run_id: UUID, **kwargs: Any) -> None:
        prompt = messages[0] if len(messages) == 1 else list(messages)
        await self._start(_model_name(serialized, kwargs), prompt, run_id)

    async def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            await run.anew_token(token)

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is None:
            return
        try:
            usage = _usage_of(response)
        except (TypeError, ValueError):
            usage = None
        await run.aend(_text_of(response), usage=usage,
                       response_model=_response_model_of(response))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is not None:
            await run.aerror(error)

    @property
    def in_flight(self) -> int:
        """How many runs have started and not yet ended."""
        with self._lock:
            return len(self._runs)
