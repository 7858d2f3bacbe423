"""The catalogs shipped with howto (classic YAML, pinned versions, their blocks)."""
