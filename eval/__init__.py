"""The evaluation stage: gold set, metrics, judges, configurations side by side, and the report.

Entry point: ``python -m eval`` (see ``eval/__main__.py``); ``runner`` runs one evaluation. Sub-packages
by role, modules with one job each:

- ``data``: gold questions and labelled claims (``gold``), the eval's own knowledge bases (``kbs``);
- ``systems``: what is compared: answer configurations (``configs``), retrieval systems (``rankers``),
  baselines (``baselines``);
- ``metrics``: retrieval metrics (``ranking``), one answer scored (``scoring``), figures (``aggregate``),
  the metric definitions (``registry``);
- ``judges``: answers into claims (``claims``), subtle-error checks (``checks``, ``table_checks``), the
  offline judge (``offline``), the LLM judge (``llm``, ``llm_json``);
- ``report``: tables, report pages and plots, two runs compared.
"""
