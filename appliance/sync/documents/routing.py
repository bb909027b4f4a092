"""Owner of ``routing`` documents: the routing table (``routes``, first match wins) that replaces the
``[[routes]]`` of the configuration file while it is stored.

The routes are built by the configuration loader's own code (:func:`appliance.config.load.build_field`),
so a pushed table obeys exactly the rules of a table in the file, with the same messages; then the
configuration's cross-checks run on the running configuration with the new routes (a match used twice, an
agent group the site does not define, recording without a recording key). There is one routing table: the
document is named :data:`TABLE`. Applying hands the routes to the injected ``on_routes``; removing the
document hands back the file's routes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from appliance.config import Config, ConfigError, RouteConfig
from appliance.config.load import build_field
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.fields import read_map
from appliance.sync.documents.model import Kind

TABLE: Final = "default"
"""The name of the one routing document."""

Routes = tuple[RouteConfig, ...]


class RoutingOwner:
    """``routing`` documents checked against ``config`` (the running configuration) and handed to
    ``on_routes``, which must not fail (it swaps the call router's table)."""

    kind: Kind = "routing"

    def __init__(self, config: Config, *, on_routes: Callable[[Routes], None]) -> None:
        self._config = config
        self._on_routes = on_routes

    def validate(self, name: str, content: Any, *, version: int) -> Routes:
        if name != TABLE:
            raise InvalidDocument(f'there is one routing table, the document "{TABLE}", not "{name}"')
        raw = read_map(content, "", required=("routes",))
        try:
            routes: Routes = build_field(Config, "routes", raw["routes"])
        except ConfigError as exc:
            first = exc.errors[0]
            raise InvalidDocument(first.message, path=first.path) from None
        candidate = dataclasses.replace(self._config, routes=routes)
        for path, message in candidate.cross_check():
            if path.startswith("routes"):
                raise InvalidDocument(message, path=path)
        return routes

    def apply(self, name: str, prepared: Routes) -> None:
        self._on_routes(prepared)

    def remove(self, name: str) -> None:
        self._on_routes(self._config.routes)
