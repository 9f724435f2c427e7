"""orchestration/keys.py names real assets: each key is an asset of the graph, in the group its
module names, so a renamed asset cannot leave a stale key behind."""

from __future__ import annotations

import dagster as dg

from orchestration import keys
from orchestration.definitions import defs


def test_every_key_in_orchestration_keys_is_an_asset_of_its_group():
    graph = defs.resolve_asset_graph()
    groups = {v for n, v in vars(keys).items() if n.endswith("_GROUP")}
    named = {n: v for n, v in vars(keys).items() if n.endswith("_KEY")}
    assert len(named) >= 8
    for name, key in named.items():
        assert isinstance(key, dg.AssetKey) and graph.has(key), name
        assert graph.get(key).group_name == key.path[0] and key.path[0] in groups, name
    published = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == keys.PUBLISH_GROUP}
    assert published == {keys.publish_key(k.path[-1]) for k in published}
