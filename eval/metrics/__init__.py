"""The figures: metrics over ranked passages (``ranking``), one answer scored against its gold question
(``scoring``), per-question scores into per-configuration figures (``aggregate``), and the one list of
metric definitions every table reads (``registry``)."""
