"""Optional integrations, each behind an extra and imported only when used.

- ``prodfast.integrations.prometheus`` (``pip install prodfast[prometheus]``): a
  prometheus_client collector exporting a CallbackManager's metrics with real quantiles,
  named after the OpenTelemetry GenAI semantic conventions.
- ``prodfast.integrations.langchain`` (``pip install prodfast[langchain]``): a LangChain
  callback handler that feeds LangChain's LLM and chat-model runs to a CallbackManager.

This package imports neither dependency itself.
"""
