/* riskatlas: the map page. Started by Folium's script with the Leaflet map it created. */
(function () {
  'use strict';

  // VectorGrid 1.3 calls L.DomEvent.fakeStop, which Leaflet 1.8 removed; without it a click on
  // a canvas tile throws. Leaflet 1.9 checks `_stopped`, which is what fakeStop used to set.
  if (window.L && L.DomEvent && !L.DomEvent.fakeStop) {
    L.DomEvent.fakeStop = function (e) { e._stopped = true; };
  }

  var RA = window.RA;
  var el = RA.el, fmt = RA.fmt;
  var HOTSPOT_STYLES = {
    hot_99: { color: '#67000d', weight: 3.5, opacity: 1 },
    hot_95: { color: '#a50f15', weight: 2.5, opacity: 1 },
    hot_90: { color: '#cb181d', weight: 2, opacity: 1, dashArray: '4 3' },
    cold_99: { color: '#08306b', weight: 3.5, opacity: 1 },
    cold_95: { color: '#08519c', weight: 2.5, opacity: 1 },
    cold_90: { color: '#2171b5', weight: 2, opacity: 1, dashArray: '4 3' }
  };
  var INSTITUTION_COLOURS = ['#1b9e77', '#d95f02', '#7570b3', '#e7298a', '#66a61e', '#e6ab02', '#a6761d', '#666666', '#1f78b4'];

  function App(map, config) {
    this.map = map;
    this.urls = config.urls;
    this.ph = config.placeholders;
    var params = new URLSearchParams(window.location.search);
    this.state = {
      score: params.get('score') || 'composite', level: params.get('level') ? +params.get('level') : null,
      method: params.get('method') || 'quantiles', k: +(params.get('k') || 5), palette: params.get('palette') || '',
      minStressed: +(params.get('min_stressed') || 0), indicator: params.get('indicator') || '',
      period: params.get('period') || 'change', hazard: params.getAll('hazard'), code: params.get('code')
    };
    this.classes = null;
    this.selected = null;
    this.hazardLayers = {};
    this.pendingTiles = 0;
    this.firstPaint = false;
    window.riskatlas = this;  // for tests and the benchmark: the app's state and map
  }

  App.prototype.status = function (text, isError) {
    var node = document.getElementById('ra-status');
    node.textContent = text;
    node.className = 'ra-status' + (isError ? ' ra-error' : '');
    node.setAttribute('role', isError ? 'alert' : 'status');
  };

  /** Show (or with null, hide) a message over the map. */
  App.prototype.mapAlert = function (text) {
    var node = document.getElementById('ra-map-alert');
    node.textContent = text || '';
    node.hidden = !text;
  };

  App.prototype.start = function () {
    var self = this;
    this.map.createPane('ra-hazards').style.zIndex = 390;
    this.map.createPane('ra-boundaries').style.zIndex = 420;
    this.map.createPane('ra-hotspots').style.zIndex = 430;
    // Outlines drawn above the choropleth must not swallow its clicks.
    this.map.getPane('ra-boundaries').style.pointerEvents = 'none';
    this.map.getPane('ra-hotspots').style.pointerEvents = 'none';
    this.map.createPane('ra-selection').style.zIndex = 440;
    this.map.getPane('ra-selection').style.pointerEvents = 'none';
    this.layerControl = L.control.layers(null, null, { collapsed: true, position: 'topright' }).addTo(this.map);
    this.bindControls();
    // Hazards do not depend on a score run: a fresh install with only rasters still shows them.
    this.loadHazards();
    // TileJSON (bounds) and the options are independent: fetch them side by side, then the
    // class breaks, and only then draw, so the first paint is already the choropleth.
    var tilejson = RA.getJSON(RA.withQuery(this.urls.tilejson, { run: 'latest' }));
    return RA.getJSON(RA.withQuery(this.urls.map_options, { run: 'latest' }))
      .then(function (options) {
        self.options = options;
        self.run = options.run;
        self.fillOptions(options);
        return Promise.all([tilejson, self.refreshClasses()]);
      })
      .then(function (results) {
        var b = results[0].bounds;
        if (!self.state.code) { self.map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { animate: false }); }
        self.fitted = true;
        self.addChoropleth();
        if (self.state.code) { self.openLocality(self.state.code, { fly: true }); }
      })
      .catch(function (error) {
        var legend = RA.clear(document.getElementById('ra-legend'));
        if (error.status === 404) {
          // A fresh install (data loaded, nothing scored yet) is a state, not a failure.
          self.status('No score run has completed yet, so there are no scores to map. Run ' +
            '“riskatlas score” (or POST /api/v1/runs); hazard layers can be shown meanwhile.');
          legend.appendChild(el('p', { text: 'No scores yet.' }));
          return;
        }
        self.status('The map could not load: ' + error.message, true);
        self.mapAlert('The map could not load: ' + error.message);
        legend.appendChild(el('p', { className: 'ra-error', text: 'No legend: ' + error.message }));
      });
  };

  // -- controls ---------------------------------------------------------------------------------

  App.prototype.fillOptions = function (options) {
    var s = this.state;
    var score = RA.clear(document.getElementById('ra-score'));
    options.scores.forEach(function (o) { score.appendChild(el('option', { value: o.id, text: o.label })); });
    if (!options.scores.some(function (o) { return o.id === s.score; }) && s.score.indexOf('trend:') !== 0) { s.score = 'composite'; }
    score.value = s.score.indexOf('trend:') === 0 ? 'composite' : s.score;
    var level = RA.clear(document.getElementById('ra-level'));
    options.levels.forEach(function (l) { level.appendChild(el('option', { value: l, text: 'Level ' + l + (l === Math.max.apply(null, options.levels) ? ' (finest)' : '') })); });
    if (s.level === null || options.levels.indexOf(s.level) < 0) { s.level = Math.max.apply(null, options.levels); }
    level.value = String(s.level);
    var slider = document.getElementById('ra-min-stressed');
    slider.max = String(Math.max(options.dimension_count || 0, options.max_stressed_dimensions || 0, 1));
    slider.value = String(s.minStressed);
    document.getElementById('ra-min-stressed-out').textContent = String(s.minStressed);
    var indicator = document.getElementById('ra-indicator');
    options.indicators.forEach(function (i) { indicator.appendChild(el('option', { value: i, text: RA.words(i) })); });
    if (options.periods.baseline.length) { document.getElementById('ra-p-baseline').textContent = 'Baseline ' + options.periods.baseline.join(', '); }
    if (options.periods.followup.length) { document.getElementById('ra-p-followup').textContent = 'Follow-up ' + options.periods.followup.join(', '); }
    if (s.indicator && options.indicators.indexOf(s.indicator) >= 0) {
      indicator.value = s.indicator;
      document.getElementById('ra-periods').disabled = false;
      var radio = document.querySelector('input[name="ra-period"][value="' + (['baseline', 'followup', 'change'].indexOf(s.period) >= 0 ? s.period : 'change') + '"]');
      if (radio) { radio.checked = true; }
      s.score = 'trend:' + s.indicator + ':' + s.period;
    }
    document.getElementById('ra-method').value = s.method;
    document.getElementById('ra-k').value = String(s.k);
    document.getElementById('ra-palette').value = s.palette;
  };

  App.prototype.bindControls = function () {
    var self = this, s = this.state;
    function on(id, event, handler) { document.getElementById(id).addEventListener(event, handler); }
    on('ra-score', 'change', function (e) {
      s.score = e.target.value; s.indicator = '';
      document.getElementById('ra-indicator').value = '';
      document.getElementById('ra-periods').disabled = true;
      self.refreshClasses();
    });
    on('ra-level', 'change', function (e) {
      s.level = +e.target.value;
      self.choropleth.setUrl(self.tileUrl(s.level));
      if (self.hotspots) { self.hotspots.setUrl(self.tileUrl(s.level)); self.selection.setUrl(self.tileUrl(s.level)); }
      self.refreshClasses();
      self.loadParents();
      self.loadRanking();
    });
    on('ra-method', 'change', function (e) { s.method = e.target.value; self.refreshClasses(); });
    on('ra-k', 'change', function (e) { s.k = +e.target.value; self.refreshClasses(); });
    on('ra-palette', 'change', function (e) { s.palette = e.target.value; self.refreshClasses(); });
    on('ra-min-stressed', 'input', function (e) {
      s.minStressed = +e.target.value;
      document.getElementById('ra-min-stressed-out').textContent = String(s.minStressed);
      self.restyle();
      self.renderLegend();
    });
    on('ra-indicator', 'change', function (e) {
      s.indicator = e.target.value;
      document.getElementById('ra-periods').disabled = !s.indicator;
      s.score = s.indicator ? 'trend:' + s.indicator + ':' + s.period : document.getElementById('ra-score').value;
      self.refreshClasses();
    });
    Array.prototype.forEach.call(document.querySelectorAll('input[name="ra-period"]'), function (radio) {
      radio.addEventListener('change', function (e) {
        s.period = e.target.value;
        if (s.indicator) { s.score = 'trend:' + s.indicator + ':' + s.period; self.refreshClasses(); }
      });
    });
    on('ra-rank-parent', 'change', function () { self.loadRanking(); });
    on('ra-rank-n', 'change', function () { self.loadRanking(); });
    on('ra-rank-compounded', 'change', function () { self.loadRanking(); });
    this.bindSearch();
    // Keyboard: Escape closes the panel from anywhere on the page.
    document.addEventListener('keydown', function (e) { if (e.key === 'Escape' && self.selected) { self.closePanel(); } });
  };

  // -- the choropleth -----------------------------------------------------------------------------

  App.prototype.tileUrl = function (level) {
    return RA.withQuery(this.urls.tiles, { run: this.run.id, level: level });
  };

  App.prototype.valueOf = function (props) {
    var c = this.classes;
    if (!c) { return null; }
    if (c.values) { var v = c.values[props.code]; return v === undefined ? null : v; }
    var value = props[c.score];
    return value === undefined ? null : value;
  };

  App.prototype.classOf = function (value) {
    var c = this.classes;
    if (!c || value === null || value === undefined) { return -1; }
    for (var i = 1; i < c.breaks.length; i++) { if (value <= c.breaks[i] + 1e-9) { return i - 1; } }
    return c.breaks.length - 2;
  };

  // Opaque fills: there is no basemap to show through, and the map's colours then match the
  // legend's exactly (which the browser test checks pixel by pixel).
  App.prototype.styleFor = function (props) {
    var value = this.valueOf(props);
    var index = this.classOf(value);
    var colour = index < 0 ? this.classes.no_data_colour : this.classes.colours[index];
    var filteredOut = this.state.minStressed > 0 && !((props.stressed_dimensions || 0) >= this.state.minStressed);
    return {
      fill: true, fillColor: filteredOut ? '#f4f4f4' : colour, fillOpacity: 1,
      stroke: true, color: filteredOut ? '#bbb' : '#5a5a5a', weight: 0.6, opacity: 0.8
    };
  };

  App.prototype.addChoropleth = function () {
    var self = this;
    this.choropleth = L.vectorGrid.protobuf(this.tileUrl(this.state.level), {
      rendererFactory: L.canvas.tile, interactive: true, maxNativeZoom: 16,
      getFeatureId: function (f) { return f.properties.code; },
      vectorTileLayerStyles: { localities: function (props) {
        // Without class breaks (slow or failing API) still draw outlines, never a blank map.
        return self.classes ? self.styleFor(props)
          : { fill: true, fillColor: '#ffffff', fillOpacity: 1, stroke: true, color: '#777', weight: 0.6 };
      } },
      attribution: 'riskatlas scores'
    });
    this.choropleth.on('click', function (e) {
      var props = e.layer && e.layer.properties;
      if (props && props.code) { self.openLocality(props.code, { fly: false, latlng: e.latlng }); }
    });
    this.choropleth.on('loading', function () { document.getElementById('ra-loading').hidden = false; });
    this.choropleth.on('load', function () {
      document.getElementById('ra-loading').hidden = true;
      if (!self.firstPaint) {
        self.firstPaint = true;
        window.__raFirstPaint = performance.now();
        if (!self.classesError) {
          self.status('Showing ' + self.scoreLabel() + ' by locality. Click a locality, search, or use the list to read its profile.');
        }
        self.addExtras();
      }
    });
    this.choropleth.on('tileerror', function (e) {
      self.status('Some map tiles failed to load' + (e && e.error && e.error.message ? ' (' + e.error.message + ')' : '') +
        '. Pan or zoom to retry.', true);
    });
    this.choropleth.addTo(this.map);
    this.layerControl.addOverlay(this.choropleth, 'Choropleth (score by locality)');
  };

  /**
   * Everything beside the choropleth, started once its first tiles are drawn: on a busy server
   * these requests would otherwise queue beside the choropleth's tiles and delay its first
   * paint. The hot-spot outlines then reuse the choropleth's tiles from the HTTP cache.
   */
  App.prototype.addExtras = function () {
    this.addSelection();
    this.highlight(null, this.selected);
    this.addHotspots();
    this.addBoundaries();
    this.loadRanking();
    this.loadParents();
    this.loadPoints();
  };

  App.prototype.restyle = function () {
    // VectorGrid reads styles when it draws a tile; redrawing re-creates the visible tiles
    // (served from the browser's HTTP cache), cheaper than tracking every feature.
    if (this.choropleth && this.classes) { this.choropleth.redraw(); }
  };

  var SELECTED_STYLE = { fill: false, stroke: true, color: '#000', weight: 4, opacity: 1 };
  var INVISIBLE_STYLE = { fill: false, stroke: false };

  /** The selected locality's outline, in its own pane above hot spots and boundaries. */
  App.prototype.addSelection = function () {
    var self = this;
    this.selection = L.vectorGrid.protobuf(this.tileUrl(this.state.level), {
      rendererFactory: L.canvas.tile, interactive: false, pane: 'ra-selection', maxNativeZoom: 16,
      getFeatureId: function (f) { return f.properties.code; },
      vectorTileLayerStyles: { localities: function (props) {
        return props.code === self.selected ? SELECTED_STYLE : INVISIBLE_STYLE;
      } }
    });
    this.selection.addTo(this.map);
  };

  /**
   * Outline the selected locality and drop the previous outline. Only their tiles' pixels are
   * repainted: redrawing every tile of 20,000 localities would take longer than the 300 ms a
   * panel may take to open. Tiles drawn later read the selection in the style function.
   */
  App.prototype.highlight = function (previous, code) {
    if (!this.selection || previous === code) { return; }
    if (previous) { this.selection.resetFeatureStyle(previous); }
    if (code) { this.selection.setFeatureStyle(code, SELECTED_STYLE); }
  };

  App.prototype.scoreLabel = function () {
    var s = this.state.score;
    if (s.indexOf('trend:') === 0) {
      var parts = s.split(':');
      var periods = this.options.periods;
      var period = parts[2] === 'change' ? 'change ' + (periods.baseline[0] || 'baseline') + ' → ' + (periods.followup[0] || 'follow-up')
        : parts[2] === 'baseline' ? 'baseline ' + (periods.baseline.join(', ')) : 'follow-up ' + (periods.followup.join(', '));
      return RA.words(parts[1]) + ' (' + period + ')';
    }
    var found = (this.options.scores || []).filter(function (o) { return o.id === s; })[0];
    return found ? found.label : RA.words(s);
  };

  App.prototype.refreshClasses = function () {
    var self = this, s = this.state;
    var legend = document.getElementById('ra-legend');
    legend.setAttribute('aria-busy', 'true');
    return RA.getJSON(RA.withQuery(this.urls.map_classes, {
      score: s.score, method: s.method, k: s.k, palette: s.palette, run: this.run.id, level: s.level
    })).then(function (classes) {
      if (classes.score !== self.state.score) { return; }  // a newer choice is on its way
      self.classes = classes;
      self.classesError = null;
      self.mapAlert(null);
      legend.removeAttribute('aria-busy');
      self.renderLegend();
      self.restyle();
      self.syncUrl();
    }, function (error) {
      legend.removeAttribute('aria-busy');
      self.classesError = error;
      RA.clear(legend).appendChild(el('p', { className: 'ra-error', role: 'alert', text: 'Class breaks could not load: ' + error.message }));
      legend.appendChild(el('button', { type: 'button', onclick: function () { self.refreshClasses(); }, text: 'Try again' }));
      self.status('The map colours could not be computed: ' + error.message, true);
      // Also on the map itself: the controls' status line may be scrolled out of sight.
      self.mapAlert('No colours (' + error.message + '): only outlines are shown.');
    });
  };

  App.prototype.renderLegend = function () {
    var c = this.classes, legend = RA.clear(document.getElementById('ra-legend'));
    if (!c) { return; }
    var integer = c.method === 'integer';
    var methodText = integer ? 'one class per count' : RA.words(c.method).toLowerCase() + ', ' + (c.breaks.length - 1) + ' classes';
    legend.appendChild(el('p', { className: 'ra-legend-title', id: 'ra-legend-score', text: this.scoreLabel() }));
    var list = el('ul', { className: 'ra-legend-classes', 'aria-label': 'Classes' });
    for (var i = 0; i < c.colours.length; i++) {
      var low = c.breaks[i], high = c.breaks[i + 1];
      var range = integer ? String(high) : (i === 0 ? fmt(low, 2) : '> ' + fmt(low, 2)) + ' – ' + fmt(high, 2);
      list.appendChild(el('li', { 'data-colour': c.colours[i] }, [
        el('span', { className: 'ra-swatch', style: { background: c.colours[i] }, 'aria-hidden': 'true' }),
        el('span', { text: range }), el('span', { className: 'ra-count', text: ' (' + c.counts[i] + ')' })
      ]));
    }
    if (c.missing) {
      list.appendChild(el('li', {}, [el('span', { className: 'ra-swatch', style: { background: c.no_data_colour }, 'aria-hidden': 'true' }),
        el('span', { text: 'no data (' + c.missing + ')' })]));
    }
    legend.appendChild(list);
    var runDate = c.run.completed_at ? c.run.completed_at.slice(0, 10) : 'unknown date';
    legend.appendChild(el('p', { className: 'ra-hint', id: 'ra-legend-run', text: 'Score run ' + c.run.id + ' of ' + runDate +
      '; breaks: ' + methodText + ' (mapclassify); colours: ' + c.palette + ' (colour-blind safe).' +
      (this.state.minStressed > 0 ? ' Greyed: stressed in fewer than ' + this.state.minStressed + ' dimensions.' : '') }));
  };

  App.prototype.addHotspots = function () {
    this.hotspots = L.vectorGrid.protobuf(this.tileUrl(this.state.level), {
      rendererFactory: L.canvas.tile, interactive: false, pane: 'ra-hotspots', maxNativeZoom: 16,
      vectorTileLayerStyles: { localities: function (props) {
        var style = HOTSPOT_STYLES[props.hotspot];
        return style ? L.extend({ fill: false, stroke: true }, style) : [];
      } }
    });
    this.hotspots.addTo(this.map);
    this.layerControl.addOverlay(this.hotspots,
      'Hot spots (Gi*): <span class="ra-key ra-key-hot"></span> hot <span class="ra-key ra-key-cold"></span> cold; dashed = 90 %');
  };

  App.prototype.addBoundaries = function () {
    var self = this;
    var levels = (this.options.levels || []).slice().sort();
    levels.forEach(function (level, i) {
      var weight = Math.max(0.8, 3 - i);
      var layer = L.vectorGrid.protobuf(RA.withQuery(self.urls.tiles, { run: self.run.id, level: level }), {
        rendererFactory: L.canvas.tile, interactive: false, pane: 'ra-boundaries', maxNativeZoom: 16,
        vectorTileLayerStyles: { localities: { fill: false, stroke: true, color: '#222', weight: weight, opacity: 0.9 } }
      });
      // The level just above the choropleth's gives context without hiding it.
      if (level === self.state.level - 1) { layer.addTo(self.map); }
      self.layerControl.addOverlay(layer, 'Admin boundaries, level ' + level);
    });
  };

  // -- the locality panel -------------------------------------------------------------------------

  App.prototype.openLocality = function (code, options) {
    var self = this;
    var panel = document.getElementById('ra-panel');
    var body = document.getElementById('ra-panel-body');
    var previous = this.selected;
    this.selected = code;
    panel.hidden = false;
    panel.setAttribute('aria-busy', 'true');
    RA.panelMessage(body, 'Loading the profile of ' + code + '…', false);
    this.highlight(previous, code);
    // The panel narrows the map: Leaflet must measure it again before flying.
    this.map.invalidateSize({ pan: false });
    // The panel may now cover the place just clicked: bring it back into view.
    if (options && options.latlng && !this.map.getBounds().pad(-0.1).contains(options.latlng)) {
      this.map.panTo(options.latlng, { animate: false });
    }
    var started = performance.now();
    return RA.getJSON(RA.fill(this.urls.risk, this.ph.code, code) + '?run=' + encodeURIComponent(this.run.id))
      .then(function (profile) {
        if (self.selected !== code) { return; }
        var bbox = profile.locality.bbox;
        var zoom = function () { self.map.flyToBounds([[bbox[1], bbox[0]], [bbox[3], bbox[2]]], { maxZoom: 13, duration: 0.8 }); };
        RA.renderProfile(body, profile, {
          printUrl: RA.fill(self.urls.print_page, self.ph.code, code),
          onZoom: zoom, onClose: function () { self.closePanel(); }
        });
        panel.removeAttribute('aria-busy');
        window.__raPanelMs = performance.now() - started;
        if (options && options.fly && bbox) { zoom(); }
        else if (bbox) {
          // Clicked with the panel opening beside it: keep the whole locality in sight.
          var bounds = L.latLngBounds([[bbox[1], bbox[0]], [bbox[3], bbox[2]]]);
          if (!self.map.getBounds().contains(bounds)) { self.map.panTo(bounds.getCenter()); }
        }
        if (options && options.focus !== false) { panel.focus({ preventScroll: true }); }
        self.state.code = code;
        self.syncUrl();
      }, function (error) {
        panel.removeAttribute('aria-busy');
        RA.panelMessage(body, 'The profile of ' + code + ' could not load. ' + error.message, true,
          function () { self.openLocality(code, options); });
      });
  };

  App.prototype.closePanel = function () {
    var previous = this.selected;
    this.selected = null;
    this.state.code = null;
    document.getElementById('ra-panel').hidden = true;
    this.map.invalidateSize({ pan: false });
    this.highlight(previous, null);
    this.syncUrl();
    this.map.getContainer().focus();
  };

  // -- search -------------------------------------------------------------------------------------

  App.prototype.bindSearch = function () {
    var self = this;
    var form = document.getElementById('ra-search');
    var input = document.getElementById('ra-search-input');
    var results = document.getElementById('ra-search-results');
    var timer = null, seq = 0;
    function show(open) { results.hidden = !open; input.setAttribute('aria-expanded', open ? 'true' : 'false'); }
    function choose(item) {
      show(false);
      input.value = item.name;
      self.openLocality(item.code, { fly: true });
    }
    function search(query, pickFirst) {
      var mine = ++seq;
      if (query.trim().length < 2) { show(false); return; }
      RA.getJSON(RA.withQuery(self.urls.localities, { q: query.trim(), limit: 8 })).then(function (page) {
        if (mine !== seq) { return; }
        RA.clear(results);
        if (!page.items.length) {
          results.appendChild(el('li', { className: 'ra-empty', text: 'No locality matches “' + query + '”.' }));
        }
        page.items.forEach(function (item, i) {
          results.appendChild(el('li', { role: 'option', id: 'ra-opt-' + i }, [el('button', { type: 'button', 'data-code': item.code,
            onclick: function () { choose(item); } }, [item.name + ' ', el('span', { className: 'ra-code', text: item.code + ' · level ' + item.level })])]));
        });
        show(true);
        if (pickFirst && page.items.length) { choose(page.items[0]); }
      }, function (error) {
        if (mine !== seq) { return; }
        RA.clear(results).appendChild(el('li', { className: 'ra-error', role: 'alert', text: 'Search failed: ' + error.message }));
        show(true);
      });
    }
    input.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { search(input.value, false); }, 250);
    });
    input.addEventListener('keydown', function (e) {
      if (e.key === 'ArrowDown') { var first = results.querySelector('button'); if (first) { e.preventDefault(); first.focus(); } }
    });
    results.addEventListener('keydown', function (e) {
      var buttons = Array.prototype.slice.call(results.querySelectorAll('button'));
      var at = buttons.indexOf(document.activeElement);
      if (e.key === 'ArrowDown' && at < buttons.length - 1) { e.preventDefault(); buttons[at + 1].focus(); }
      if (e.key === 'ArrowUp') { e.preventDefault(); (at > 0 ? buttons[at - 1] : input).focus(); }
      if (e.key === 'Escape') { show(false); input.focus(); }
    });
    form.addEventListener('submit', function (e) { e.preventDefault(); clearTimeout(timer); search(input.value, true); });
  };

  // -- furthest behind ----------------------------------------------------------------------------

  App.prototype.rankingParams = function () {
    return {
      run: this.run.id, level: this.state.level, parent: document.getElementById('ra-rank-parent').value,
      limit: document.getElementById('ra-rank-n').value,
      compounded_only: document.getElementById('ra-rank-compounded').checked ? 'true' : ''
    };
  };

  App.prototype.loadRanking = function () {
    var self = this;
    var list = document.getElementById('ra-ranking');
    var params = this.rankingParams();
    document.getElementById('ra-rank-csv').href = RA.withQuery(this.urls.rankings_csv, params);
    list.setAttribute('aria-busy', 'true');
    RA.clear(list).appendChild(el('li', { className: 'ra-loading-text', text: 'Loading…' }));
    var mine = this.rankingSeq = (this.rankingSeq || 0) + 1;
    RA.getJSON(RA.withQuery(this.urls.rankings, params)).then(function (ranking) {
      if (mine !== self.rankingSeq) { return; }  // a newer filter has been chosen meanwhile
      list.removeAttribute('aria-busy');
      RA.clear(list);
      if (!ranking.items.length) { list.appendChild(el('li', { text: 'No locality matches these filters.' })); }
      ranking.items.forEach(function (item) {
        var extra = [item.stressed_dimensions + ' stressed'];
        if (item.hotspot && item.hotspot.indexOf('hot') === 0) { extra.push(RA.words(item.hotspot).toLowerCase()); }
        list.appendChild(el('li', { value: item.rank }, [el('button', { type: 'button', 'data-code': item.code,
          onclick: function () { self.openLocality(item.code, { fly: true }); } }, [
          el('strong', { text: item.name }), ' ', el('span', { className: 'ra-code', text: item.code }),
          el('span', { className: 'ra-rank-detail', text: fmt(item.composite, 2) + ' · rank ' + item.rank +
            ' (' + item.rank_low + '–' + item.rank_high + ') · ' + extra.join(', ') })
        ])]));
      });
    }, function (error) {
      if (mine !== self.rankingSeq) { return; }
      list.removeAttribute('aria-busy');
      RA.clear(list).appendChild(el('li', { className: 'ra-error', role: 'alert', text: 'The list could not load: ' + error.message }));
    });
  };

  App.prototype.loadParents = function () {
    var select = document.getElementById('ra-rank-parent');
    var level = this.state.level - 1;
    var current = select.value;
    RA.clear(select).appendChild(el('option', { value: '', text: 'everywhere' }));
    if (level < Math.min.apply(null, this.options.levels)) { return; }
    RA.getJSON(RA.withQuery(this.urls.localities, { level: level, limit: 500 })).then(function (page) {
      page.items.forEach(function (item) { select.appendChild(el('option', { value: item.code, text: item.name + ' (' + item.code + ')' })); });
      select.value = current;
    }, function (error) {
      select.appendChild(el('option', { value: '', disabled: true, text: '(parents unavailable: ' + error.message + ')' }));
    });
  };

  // -- hazard overlays ----------------------------------------------------------------------------

  App.prototype.loadHazards = function () {
    var self = this;
    var box = document.getElementById('ra-hazards');
    RA.getJSON(this.urls.layers).then(function (layers) {
      RA.clear(box);
      var hazards = layers.filter(function (l) { return l.role === 'hazard'; });
      if (!hazards.length) { box.appendChild(el('p', { text: 'No hazard layer yet. Upload one from the upload page.' })); }
      hazards.forEach(function (layer, i) { box.appendChild(self.hazardControl(layer, i)); });
      self.state.hazard.forEach(function (name) {
        var entry = self.hazardLayers[name];
        if (entry) { entry.checkbox.checked = true; self.map.addLayer(entry.layer); self.fitToHazard(name); }
        else { self.status('The hazard layer “' + name + '” was not found.', true); }
      });
    }, function (error) {
      RA.clear(box).appendChild(el('p', { className: 'ra-error', role: 'alert', text: 'Hazard layers could not load: ' + error.message }));
    });
  };

  App.prototype.hazardControl = function (layer, index) {
    var self = this;
    var tiles = RA.fill(this.urls.hazard_tiles, this.ph.layer, layer.name);
    var tileLayer = L.tileLayer(tiles, { pane: 'ra-hazards', opacity: 0.7, maxNativeZoom: 14, maxZoom: 16,
      attribution: 'hazard: ' + layer.name.replace(/[<>&"']/g, '') });
    var id = 'ra-hz-' + index;
    var legend = el('div', { className: 'ra-hz-legend', hidden: true });
    var checkbox = el('input', { type: 'checkbox', id: id });
    var opacity = el('input', { type: 'range', min: 0, max: 100, value: 70, id: id + '-op', 'aria-label': 'Opacity of ' + layer.name });
    checkbox.addEventListener('change', function () { if (checkbox.checked) { self.map.addLayer(tileLayer); } else { self.map.removeLayer(tileLayer); } });
    opacity.addEventListener('input', function () { tileLayer.setOpacity(opacity.value / 100); });
    tileLayer.on('add', function () {
      checkbox.checked = true; legend.hidden = false;
      if (!legend.firstChild) { self.loadHazardLegend(layer, legend); }
      self.syncHazards();
    });
    tileLayer.on('remove', function () { checkbox.checked = false; legend.hidden = true; self.syncHazards(); });
    tileLayer.on('tileerror', function () { self.status('Some tiles of the hazard layer “' + layer.name + '” failed to load.', true); });
    this.hazardLayers[layer.name] = { layer: tileLayer, checkbox: checkbox };
    this.layerControl.addOverlay(tileLayer, 'Hazard: ' + layer.name.replace(/[<>&"']/g, ''));
    return el('div', { className: 'ra-hz', 'data-layer': layer.name }, [
      el('label', { for: id }, [checkbox, ' ' + layer.name + (layer.unit ? ' (' + layer.unit + ')' : '')]),
      el('label', { for: id + '-op', className: 'ra-opacity' }, ['Opacity ', opacity]), legend
    ]);
  };

  /** Without localities (no score run yet) show where the hazard layer is. */
  App.prototype.fitToHazard = function (name) {
    var self = this;
    RA.getJSON(RA.fill(this.urls.hazard_tilejson, this.ph.layer, name)).then(function (tj) {
      var b = tj.bounds;
      if (!self.fitted && b) { self.map.fitBounds([[b[1], b[0]], [b[3], b[2]]], { animate: false }); }
    }, function () { /* the layer's tiles still show; only the view is not fitted */ });
  };

  App.prototype.loadHazardLegend = function (layer, box) {
    box.appendChild(el('p', { className: 'ra-loading-text', text: 'Loading legend…' }));
    RA.getJSON(RA.fill(this.urls.hazard_legend, this.ph.layer, layer.name)).then(function (legend) {
      RA.clear(box);
      var stops = legend.stops || [];
      var gradient = 'linear-gradient(to right, ' + stops.map(function (s) { return s.color; }).join(', ') + ')';
      var unit = legend.unit ? ' ' + legend.unit : '';
      box.appendChild(el('div', { className: 'ra-gradient', style: { background: gradient }, 'aria-hidden': 'true' }));
      box.appendChild(el('p', { className: 'ra-hint', text: fmt(legend.rescale[0], 2) + unit + ' (light) to ' + fmt(legend.rescale[1], 2) + unit +
        ' (dark)' + (legend.threshold !== null && legend.threshold !== undefined ? '; exposed from ' + fmt(legend.threshold, 2) + unit : '') + '.' }));
    }, function (error) {
      RA.clear(box).appendChild(el('p', { className: 'ra-error', text: 'Legend unavailable: ' + error.message }));
    });
  };

  App.prototype.syncHazards = function () {
    var self = this;
    this.state.hazard = Object.keys(this.hazardLayers).filter(function (n) { return self.map.hasLayer(self.hazardLayers[n].layer); });
    this.syncUrl();
  };

  // -- events and institutions (clustered) ---------------------------------------------------------

  App.prototype.fetchAll = function (url, max) {
    var features = [];
    var self = this;
    function page(offset) {
      return RA.getJSON(RA.withQuery(url, { limit: 1000, offset: offset })).then(function (fc) {
        features = features.concat(fc.features || []);
        var more = fc.numberMatched > offset + (fc.numberReturned || 0) && features.length < max && (fc.numberReturned || 0) > 0;
        return more ? page(offset + fc.numberReturned) : features;
      });
    }
    return page(0).catch(function (error) {
      self.status('Points could not load: ' + error.message, true);
      return features;
    });
  };

  function dot(colour, letter, label) {
    return L.divIcon({ className: 'ra-dot', iconSize: [16, 16], html: '<span style="background:' + colour + '" aria-label="' + RA.escapeHtml(label) + '">' + RA.escapeHtml(letter) + '</span>' });
  }

  App.prototype.loadPoints = function () {
    var self = this;
    // Deferred: points are overlays, never needed for the first choropleth paint.
    this.fetchAll(this.urls.events, 20000).then(function (features) {
      var group = L.markerClusterGroup({ chunkedLoading: true, maxClusterRadius: 50 });
      var icon = dot('#b2182b', '!', 'event');
      features.forEach(function (f) {
        var p = f.properties, c = f.geometry.coordinates;
        var marker = L.marker([c[1], c[0]], { icon: icon, keyboard: false, title: p.event_type + ', ' + p.event_date });
        marker.bindPopup(function () { return el('div', {}, [el('strong', { text: p.event_type || 'Event' }), el('br'),
          (p.event_date || '') + ' · ' + (p.actor || 'unknown actor') + ' · ' + fmt(p.fatalities, 0) + ' fatalities']); });
        group.addLayer(marker);
      });
      self.layerControl.addOverlay(group, 'Conflict events (' + features.length + ', clustered)');
    });
    this.fetchAll(this.urls.institutions, 20000).then(function (features) {
      var byType = {};
      features.forEach(function (f) { (byType[f.properties.type] = byType[f.properties.type] || []).push(f); });
      Object.keys(byType).sort().forEach(function (type, i) {
        var group = L.markerClusterGroup({ chunkedLoading: true, maxClusterRadius: 40 });
        var colour = INSTITUTION_COLOURS[i % INSTITUTION_COLOURS.length];
        var icon = dot(colour, type.charAt(0).toUpperCase(), type);
        byType[type].forEach(function (f) {
          var p = f.properties, c = f.geometry.coordinates;
          var marker = L.marker([c[1], c[0]], { icon: icon, keyboard: false, title: p.generalised ? RA.words(type) + ' (location generalised)' : (p.name || RA.words(type)) });
          marker.bindPopup(function () { return el('div', {}, [el('strong', { text: p.generalised ? RA.words(type) : (p.name || RA.words(type)) }), el('br'),
            p.generalised ? 'Sensitive: shown at a generalised location, without name.' : 'Capacity: ' + fmt(p.capacity, 0)]); });
          group.addLayer(marker);
        });
        self.layerControl.addOverlay(group, '<span class="ra-key" style="background:' + colour + '"></span> ' +
          RA.words(type).replace(/[<>&"']/g, '') + ' (' + byType[type].length + ')');
      });
    });
  };

  // -- URL state ----------------------------------------------------------------------------------

  App.prototype.syncUrl = function () {
    var s = this.state;
    var params = { level: s.level, score: s.indicator ? '' : (s.score === 'composite' ? '' : s.score),
      indicator: s.indicator, period: s.indicator ? s.period : '', method: s.method === 'quantiles' ? '' : s.method,
      k: s.k === 5 ? '' : s.k, palette: s.palette, min_stressed: s.minStressed || '', code: s.code || '' };
    var url = RA.withQuery(window.location.pathname, params);
    s.hazard.forEach(function (name) { url = RA.withQuery(url, { hazard: name }); });
    window.history.replaceState(null, '', url);
  };

  window.RiskAtlas = {
    /** Start the page's app on `map` with the JSON config in the element `configId`. */
    start: function (map, configId) {
      var app = new App(map, RA.config(configId));
      app.start();
      return app;
    }
  };
}());
