"""Convert Natural Earth TopoJSON (npm ``world-atlas``) to the GeoJSON basemap shipped in ``static/``.

Usage: ``python tools/topojson_to_geojson.py countries-50m.json static/vendor/basemap/countries-50m.geojson``.
TopoJSON stores shared, quantized, delta-encoded arcs; this decodes them into plain
polygons (coordinates rounded to 4 decimals, about 11 m, plenty for a world basemap).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def decode_arcs(topo: dict[str, Any]) -> list[list[list[float]]]:
    scale = topo["transform"]["scale"]
    translate = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append([round(x * scale[0] + translate[0], 4), round(y * scale[1] + translate[1], 4)])
        arcs.append(points)
    return arcs


def ring(indexes: list[int], arcs: list[list[list[float]]]) -> list[list[float]]:
    coords: list[list[float]] = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        coords.extend(arc if not coords else arc[1:])
    return coords


def geometry(geom: dict[str, Any], arcs: list[list[list[float]]]) -> dict[str, Any] | None:
    kind = geom.get("type")
    if kind == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r, arcs) for r in geom["arcs"]]}
    if kind == "MultiPolygon":
        return {"type": "MultiPolygon", "coordinates": [[ring(r, arcs) for r in p] for p in geom["arcs"]]}
    return None


def main(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as fh:
        topo = json.load(fh)
    arcs = decode_arcs(topo)
    features = []
    for geom in topo["objects"]["countries"]["geometries"]:
        shape = geometry(geom, arcs)
        if shape is not None:
            name = (geom.get("properties") or {}).get("name", "")
            features.append({"type": "Feature", "properties": {"name": name}, "geometry": shape})
    with open(dst, "w", encoding="utf-8") as fh:
        json.dump({"type": "FeatureCollection", "features": features}, fh, separators=(",", ":"))
    print(f"{len(features)} features → {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
