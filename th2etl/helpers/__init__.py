"""Clients for other services.

* :mod:`th2etl.helpers.client`: :class:`~th2etl.helpers.client.HttpClient`, a small JSON client
  for any web API (the ``th2etl[http]`` extra, on ``requests``).
* :mod:`th2etl.helpers.th2etl_client`: ``Th2etlClient``, one method per endpoint of the th2etl
  REST API.

Nothing is imported here, so importing one client never needs the other's dependencies.
"""

from __future__ import annotations
