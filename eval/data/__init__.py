"""What the eval reads: gold questions and labelled claims (``gold``), and the knowledge bases it builds
for its corpora (``kbs``). The files themselves stay in ``eval/datasets/`` and ``eval/corpora/``."""
