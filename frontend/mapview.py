"""The Folium map of the map page: local (vendored) assets only, wired to the page's JS app."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import folium
from branca.element import Figure, MacroElement
from folium.elements import JSCSSMixin
from jinja2 import Template
from markupsafe import Markup

# Pinned copies under frontend/static/vendor (see its README): replace Folium's CDN lists so
# the page works offline and requests nothing from outside the app.
VENDOR_JS = {
    "leaflet": "vendor/leaflet-1.9.4/leaflet.js",
    "vectorgrid": "vendor/leaflet.vectorgrid-1.3.0/Leaflet.VectorGrid.bundled.min.js",
    "markercluster": "vendor/leaflet.markercluster-1.5.3/leaflet.markercluster.js",
}
VENDOR_CSS = {
    "leaflet_css": "vendor/leaflet-1.9.4/leaflet.css",
    "markercluster_css": "vendor/leaflet.markercluster-1.5.3/MarkerCluster.css",
    "markercluster_default_css": "vendor/leaflet.markercluster-1.5.3/MarkerCluster.Default.css",
}
APP_JS = ("js/ra-common.js", "js/ra-panel.js", "js/ra-map.js")
MAP_NAME = "map_riskatlas"
# Folium's viewport tag forbids pinch-zoom (user-scalable=no), which fails WCAG 1.4.4; the
# page template sets its own.
_FOLIUM_VIEWPORT = re.compile(r'<meta name="viewport"[^>]*>', re.S)

StaticUrl = Callable[[str], str]


class RiskAtlasApp(JSCSSMixin, MacroElement):
    """Starts the page's JS app on the Folium map once Leaflet has created it."""

    _template = Template("""
        {% macro script(this, kwargs) %}
            RiskAtlas.start({{ this._parent.get_name() }}, "{{ this.config_id }}");
        {% endmacro %}
    """)

    def __init__(self, static_url: StaticUrl, config_id: str) -> None:
        super().__init__()
        self._name = "RiskAtlasApp"
        self.config_id = config_id
        # Instance attributes, so Folium's class-level CDN lists stay untouched for others.
        self.default_js = [("vectorgrid", static_url(VENDOR_JS["vectorgrid"])),
                           ("markercluster", static_url(VENDOR_JS["markercluster"]))]
        self.default_js += [(path, static_url(path)) for path in APP_JS]
        self.default_css = [("markercluster_css", static_url(VENDOR_CSS["markercluster_css"])),
                            ("markercluster_default_css",
                             static_url(VENDOR_CSS["markercluster_default_css"]))]


@dataclass(frozen=True)
class MapParts:
    """Folium's rendered pieces, for the page template to place (trusted, server-made markup)."""

    header: Markup
    html: Markup
    script: Markup
    name: str


def build_map(static_url: StaticUrl, config_id: str = "ra-config") -> MapParts:
    """Return the map page's Folium map rendered into header, body and script pieces."""
    fmap = folium.Map(
        location=[0, 0], zoom_start=2, tiles=None, control_scale=True, prefer_canvas=True,
        # The view is fitted to the localities' bounds by the JS app once TileJSON arrives.
        min_zoom=2, max_zoom=16, world_copy_jump=False,
    )
    fmap._name, fmap._id = "map", "riskatlas"  # a stable variable name: `map_riskatlas`
    fmap.default_js = [("leaflet", static_url(VENDOR_JS["leaflet"]))]
    fmap.default_css = [("leaflet_css", static_url(VENDOR_CSS["leaflet_css"]))]
    RiskAtlasApp(static_url, config_id).add_to(fmap)
    figure = fmap.get_root()
    assert isinstance(figure, Figure)  # a Map's root is always its Figure
    figure.render()
    return MapParts(
        header=Markup(_FOLIUM_VIEWPORT.sub("", figure.header.render())),
        html=Markup(figure.html.render()),
        script=Markup(figure.script.render()),
        name=fmap.get_name(),
    )
