"""Optional integrations, each behind an extra and imported only when used.

- ``prodfast.integrations.prometheus`` (``pip install prodfast[prometheus]``): a
  prometheus_client collector exporting a CallbackManager's metrics as histograms by call
  attributes, with sketch quantiles, named after the OpenTelemetry GenAI semantic conventions;
  and a writer/collector pair for prometheus_client's multiprocess mode.
- ``prodfast.integrations.otel`` (``pip install prodfast[otel]``): the same data through an
  OpenTelemetry MeterProvider, under the GenAI semantic-convention names.
- ``prodfast.integrations.langchain`` (``pip install prodfast[langchain]``): a LangChain
  callback handler that feeds LangChain's LLM and chat-model runs to a CallbackManager.

This package imports neither dependency itself.
"""
