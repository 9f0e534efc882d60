"""Is a claim supported by the passages it cites? Answers into claims (``claims``), the checks for subtle
errors in text (``checks``) and in tables (``table_checks``), the offline judge (``offline``) and the LLM
judge through Ollama (``llm``, reading its replies with ``llm_json``)."""
