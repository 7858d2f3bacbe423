"""Catalogs: intake catalogs as data.

``versions`` is the index of locked versions, ``build`` makes content-addressed versions of
a catalog and records them in that index (``download`` fetches its remote data when asked),
``parse`` reads catalog YAML as bounded data, ``policy`` judges each entry (verified,
location, refused), ``pinned`` opens a tree safely.  The catalog files themselves ship as
``howto.catalogs``.  Imports every layer below ``gateway``.
"""

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
