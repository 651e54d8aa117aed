"""Online tier: the FastAPI ranker (``recsys online serve``).

``app`` builds the API, ``runtime`` holds the stores and the bundle, ``recommend`` is the
request path inside its deadline, ``blend`` its pure candidate logic, ``holder`` the bundle
swap, ``experiments`` the arms. Imports ``shared`` only.
"""
