"""What a reader sees: the tables (``tables``), report.md and report.html (``pages``) with their plots
(``plots``), and two runs side by side (``compare``)."""
