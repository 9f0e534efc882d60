"""What the eval compares: answer configurations (``configs``), retrieval systems side by side
(``rankers``) and the baselines that do not use this project's chunking (``baselines``)."""
