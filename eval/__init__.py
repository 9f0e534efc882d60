"""The evaluation stage: gold set, metrics, judges, configurations side by side, and the report.

Entry point: ``python -m eval`` (see ``eval/__main__.py``). Modules, one job each:
datasets (loading), metrics (retrieval), retrieval (retrieval systems), claims (answers into claims),
checks/tables (subtle-error checks), judges (offline judge), llm_judge + llm_json (LLM judge),
answers + naive (configurations), scoring + aggregate (figures), runner (a run), report + plots, compare.
"""
