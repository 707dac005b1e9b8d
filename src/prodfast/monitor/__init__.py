"""Callbacks and monitoring for LLM calls, in O(1) memory.

A :class:`CallbackManager` runs a list of callbacks around every LLM call it sees::

    manager = CallbackManager([RateLimitingCallback(rate=5, capacity=10), TimingCallback(),
                               ErrorTrackingCallback(), TokenUsageCallback()],
                              provider="openai")         # the calls' gen_ai.provider.name

    with manager.track("gpt-4o", prompt) as run:        # any sync call
        response = client.chat(prompt)
        run.set_response(response)                       # usage read from response["usage"],
                                                         # the response model from its "model"

    @manager.instrument(model="gpt-4o")                 # sync, async, or a (async) generator
    async def stream(prompt):                            # whose items are streamed tokens
        async for token in client.stream(prompt):
            yield token

    manager.metrics()    # calls, errors, error_rate, errors_by_type, latency, ttft, tokens, ...
                         # and by_attributes: histograms and quantiles per attribute set

Per-call dimensions (:mod:`prodfast.monitor.series`): every call is also recorded under its
OpenTelemetry GenAI attributes (``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``error.type``) in exact histograms of
duration, time to first chunk, time per output chunk and token usage, each with a mergeable
quantile sketch, for a bounded number of attribute sets. ``prodfast.integrations.prometheus``
and ``prodfast.integrations.otel`` export them.

The hooks (:class:`BaseCallback`) are the seed's: ``on_llm_start(model, prompt, **kw)``,
``on_llm_new_token(model, token, **kw)``, ``on_llm_end(model, response, tokens_used, **kw)``
and ``on_llm_error(model, error, **kw)``. The manager passes these keywords:

- every hook: ``run_id`` — one per call, so concurrent calls from threads or asyncio tasks
  never share state (the seed kept one ``start_time`` for all calls);
- ``on_llm_end``: ``latency`` (seconds), ``ttft`` (seconds to the first streamed token, or
  None), ``usage`` (``{"prompt_tokens", "completion_tokens", "total_tokens"}`` or None; an
  ``InputOnlyUsage``, a dict with ``completion_tokens`` 0, when the response reports no output
  tokens, as an embeddings response, for which no output-token observation is recorded) and
  ``streamed_tokens`` (how many chunks the call streamed, 0 if it did not stream; a chunk is
  not a token: TokenUsageCallback counts them as ``chunks``);
- ``on_llm_error``: ``latency`` and ``error_type`` (the exception's class name).

Latency runs from the moment every ``on_llm_start`` hook has returned (so a rate-limit
gate's waiting is not part of it) to the end of the call, on the manager's ``clock``
(``time.perf_counter`` unless you inject another).

A callback may define async twins (``on_llm_start_async`` and so on); async calls await
them instead of the plain hook, so a gate never blocks the event loop. A callback that
raises is logged (logger ``prodfast.callbacks``) and the call goes on, unless the manager
was built with ``raise_errors=True``. A :class:`~prodfast.RateLimitError` raised by an
``on_llm_start`` hook is a refusal, not a bug: the call does not run, the error hooks see
it (it counts as an error of type ``RateLimitError``) and it reaches the caller. A start
that is cancelled (``asyncio.wait_for`` around a call waiting at a gate) ends the same way,
as an error of type ``CancelledError``: every started call ends exactly once, and is counted.

The statistics come from the active backend's primitives (``prodfast.LatencySummary``,
``prodfast.TokenBucket``), so each stock callback holds a fixed amount of memory however
many calls it sees, and every one of them is safe to share between threads.

The package's modules: ``usage`` (reading token usage from results), ``hooks`` (the callback
interface), ``stock`` (the four stock callbacks), ``run`` (one call), ``instrument`` (the
decorator), ``series`` (per-attribute-set histograms) and ``manager``.
"""

from .hooks import BaseCallback
from .manager import CallbackManager
from .run import Run
from .stock import (
    ErrorTrackingCallback,
    RateLimitingCallback,
    TimingCallback,
    TokenUsageCallback,
)
from .usage import extract_usage

__all__ = [
    "BaseCallback",
    "CallbackManager",
    "Run",
    "TimingCallback",
    "ErrorTrackingCallback",
    "RateLimitingCallback",
    "TokenUsageCallback",
    "extract_usage",
]
