/* riskatlas: the locality profile that explains a score (map panel and printable page). */
(function () {
  'use strict';

  var RA = window.RA;
  var el = RA.el, fmt = RA.fmt, pct = RA.pct, words = RA.words;
  var PILLARS = ['hazard_exposure', 'vulnerability', 'lack_of_coping_capacity'];

  function section(title, children, id) {
    return el('section', { className: 'ra-p-section', 'aria-labelledby': id },
      [el('h3', { id: id, text: title })].concat(children));
  }

  /** A labelled bar; the number is printed beside it so colour and length are never the only cue. */
  function bar(label, value, max, opts) {
    var share = value === null || value === undefined ? 0 : Math.max(0, Math.min(1, value / max));
    var stressed = opts && opts.stressed;
    return el('div', { className: 'ra-bar-row' + (stressed ? ' ra-stressed' : ''), 'data-field': opts && opts.field,
      'data-value': value === null || value === undefined ? '' : value }, [
      el('span', { className: 'ra-bar-label', text: label }),
      el('span', { className: 'ra-bar-track', 'aria-hidden': 'true' },
        [el('span', { className: 'ra-bar-fill', style: { width: (share * 100).toFixed(1) + '%' } })]),
      el('span', { className: 'ra-bar-value', text: fmt(value, 1) + (stressed ? ' stressed' : '') })
    ]);
  }

  function table(caption, head, rows, className) {
    return el('table', { className: 'ra-table ' + (className || '') }, [
      caption ? el('caption', { text: caption }) : null,
      el('thead', {}, [el('tr', {}, head.map(function (h) { return el('th', { scope: 'col', text: h }); }))]),
      el('tbody', {}, rows.map(function (cells) {
        return el('tr', {}, cells.map(function (c, i) {
          return (i === 0 ? el('th', { scope: 'row' }, [c]) : el('td', {}, [c]));
        }));
      }))
    ]);
  }

  function fact(label, value, field, raw) {
    return el('div', { className: 'ra-fact' }, [
      el('dt', { text: label }),
      el('dd', { 'data-field': field, 'data-value': raw === undefined ? '' : raw }, [value])
    ]);
  }

  function summary(p) {
    var rank = p.rank || {};
    var dims = Object.keys(p.dimensions || {}).length;
    var k = p.run && p.run.methodology && p.run.methodology.k;
    var rankText = rank.value ? ('#' + rank.value + ' of ' + rank.of + ' (likely ' + rank.low + '–' + rank.high + ')') : '—';
    var rankParent = rank.in_parent ? ('#' + rank.in_parent + ' of ' + rank.of_in_parent + ' in ' + (p.locality.parent_code || 'parent')) : null;
    return el('dl', { className: 'ra-facts' }, [
      fact('Composite risk', fmt(p.composite, 2) + ' / 10', 'composite', p.composite),
      fact('Rank (1 = furthest behind)', rankText, 'rank', rank.value),
      rankParent ? fact('Rank in parent', rankParent, 'rank_in_parent', rank.in_parent) : null,
      fact('Stressed dimensions', String(p.stressed_dimensions) + ' of ' + dims +
        (p.compounded ? ' — compounded stress' : '') + (k ? ' (k = ' + k + ')' : ''),
        'stressed_dimensions', p.stressed_dimensions),
      fact('Hot spot', words(p.hotspot), 'hotspot', p.hotspot),
      fact('Need / vulnerability', words(p.quadrant), 'quadrant', p.quadrant),
      fact('Data completeness', pct(p.completeness, 0), 'completeness', p.completeness),
      fact('Population', p.locality.population === null || p.locality.population === undefined
        ? 'withheld (small count)' : fmt(p.locality.population, 0), 'population', p.locality.population)
    ]);
  }

  function pillars(p) {
    return section('Pillars (0–10, higher = worse)', PILLARS.map(function (id) {
      return bar(words(id), (p.pillars || {})[id], 10, { field: 'pillar:' + id });
    }), 'ra-h-pillars');
  }

  function dimensions(p) {
    var dims = p.dimensions || {};
    var ids = Object.keys(dims).sort(function (a, b) { return (dims[b].score || 0) - (dims[a].score || 0); });
    var threshold = p.run && p.run.methodology && p.run.methodology.stress_threshold;
    return section('Dimensions' + (threshold ? ' (stressed from ' + fmt(threshold, 1) + ')' : ''), ids.map(function (id) {
      var d = dims[id];
      return bar(d.label || words(id), d.score, 10, { stressed: d.stressed, field: 'dimension:' + id });
    }), 'ra-h-dims');
  }

  function drivers(p) {
    var components = p.components || {};
    var rows = (p.top_drivers || []).map(function (id) {
      var c = components[id] || {};
      var unit = c.unit && c.unit !== 'value' ? ' ' + c.unit : '';
      var raw = c.unit === 'share' ? pct(c.raw) : fmt(c.raw, 2) + unit;
      return [words(id), raw, fmt(c.normalised, 1), c.source || '—'];
    });
    if (!rows.length) { return section('Top drivers', [el('p', { text: 'No drivers recorded.' })], 'ra-h-drivers'); }
    return section('Top drivers', [table(null, ['Driver', 'Raw value', 'Score /10', 'Source'], rows, 'ra-drivers')], 'ra-h-drivers');
  }

  function hazards(p) {
    var names = Object.keys(p.hazards || {});
    if (!names.length) { return null; }
    var rows = names.map(function (name) {
      var h = p.hazards[name];
      var people = h.people_exposed === null || h.people_exposed === undefined ? 'withheld' : fmt(h.people_exposed, 0);
      return [name, people + ' (' + pct(h.people_exposed_share) + ')', words(h.level),
        fmt(h.mean, 2) + ' / ' + fmt(h.max, 2) + (h.unit ? ' ' + h.unit : '')];
    });
    return section('Hazard exposure', [table(null, ['Layer', 'People exposed', 'Level', 'Mean / max'], rows, 'ra-hazards')], 'ra-h-hazards-p');
  }

  function conflict(p) {
    var c = p.conflict;
    if (!c || !Object.keys(c).length) { return null; }
    return section('Conflict and violence', [el('p', { text:
      fmt(c.events, 0) + ' events, ' + fmt(c.fatalities, 0) + ' fatalities in the window' +
      (c.window_end ? ' ending ' + c.window_end : '') + ' (' + fmt(c.events_per_100k, 1) +
      ' per 100k people; change ' + fmt(c.events_per_100k_change, 1) + '); ' +
      fmt(c.events_in_band, 0) + ' events in the surrounding band.' })], 'ra-h-conflict');
  }

  function access(p) {
    var families = Object.keys(p.access || {});
    if (!families.length) { return null; }
    var rows = families.map(function (f) {
      var a = p.access[f];
      return [words(f), fmt(a.distance_km, 1) + ' km', pct(a.coverage_share), fmt(a.per_10k, 1), fmt(a.count, 0)];
    });
    return section('Nearest services', [table(null, ['Service', 'Distance (pop.-weighted)', 'People covered', 'Per 10k', 'Inside'], rows, 'ra-access')], 'ra-h-access');
  }

  function subgroups(p, limit) {
    var cells = (p.subgroups || []).slice().sort(function (a, b) { return (a.rank_in_locality || a.rank || 0) - (b.rank_in_locality || b.rank || 0); }).slice(0, limit || 10);
    if (!cells.length) {
      return section('Who is furthest behind here', [el('p', { text: p.subgroups_visible === false
        ? 'Subgroup data needs the analyst role.' : 'No subgroup data for this locality.' })], 'ra-h-sub');
    }
    var rows = cells.map(function (s) {
      if (s.withheld) {
        return [words(s.indicator), s.subgroup, 'withheld', 'withheld', 'withheld', 'fewer than the disclosure minimum'];
      }
      return [words(s.indicator), s.subgroup, fmt(s.value, 1), fmt(s.gap_locality, 1), fmt(s.gap_national, 1), fmt(s.sample_size, 0)];
    });
    return section('Who is furthest behind here (subgroup gaps)', [
      table(null, ['Indicator', 'Subgroup', 'Value', 'Gap vs locality', 'Gap vs national', 'Sample'], rows, 'ra-subgroups'),
      el('p', { className: 'ra-hint', text: '“withheld”: too few people answered to show the value safely.' })
    ], 'ra-h-sub');
  }

  function trend(p) {
    var names = Object.keys(p.trend || {}).sort();
    if (!names.length) { return null; }
    var first = p.trend[names[0]];
    var rows = names.map(function (name) {
      var t = p.trend[name];
      var verdict = t.improved === true ? 'improved' : t.improved === false ? 'worsened' : '—';
      return [words(name), fmt(t.baseline, 1), fmt(t.followup, 1), (t.change > 0 ? '+' : '') + fmt(t.change, 1), verdict];
    });
    var head = ['Indicator', 'Baseline' + (first.baseline_period ? ' ' + first.baseline_period : ''),
      'Follow-up' + (first.followup_period ? ' ' + first.followup_period : ''), 'Change', 'Direction'];
    return section('Trend, baseline → follow-up', [table(null, head, rows, 'ra-trend')], 'ra-h-trend');
  }

  function priorities(p) {
    var list = (p.community_priorities || []).slice().sort(function (a, b) { return a.rank - b.rank; });
    if (!list.length) {
      return section('Community priorities', [el('p', { text: 'No community forum recorded for this locality.' })], 'ra-h-prio');
    }
    var date = list[0].forum_date ? 'Forum of ' + list[0].forum_date + ': ' : '';
    return section('Community priorities', [
      el('p', { className: 'ra-hint', text: date + 'what the community itself ranked first, beside the evidence.' }),
      el('ol', { className: 'ra-priorities' }, list.map(function (x) { return el('li', { text: x.need }); }))
    ], 'ra-h-prio');
  }

  function institutions(p) {
    var types = Object.keys(p.institutions || {});
    if (!types.length) { return null; }
    return section('Institutions inside', [el('p', { text: types.map(function (t) {
      return fmt(p.institutions[t], 0) + ' ' + words(t).toLowerCase(); }).join(', ') })], 'ra-h-inst');
  }

  /**
   * Render a risk profile (GET /api/v1/localities/{code}/risk) into `container`.
   * options: {printUrl, onClose, onZoom, print}
   */
  RA.renderProfile = function (container, p, options) {
    var opts = options || {};
    var loc = p.locality || {};
    var run = p.run || {};
    var method = run.methodology || {};
    RA.clear(container);
    var actions = opts.print ? null : el('div', { className: 'ra-actions' }, [
      opts.onZoom ? el('button', { type: 'button', onclick: opts.onZoom, text: 'Zoom to' }) : null,
      opts.printUrl ? el('a', { href: opts.printUrl, target: '_blank', rel: 'noopener', className: 'ra-button', text: 'Printable profile' }) : null,
      opts.onClose ? el('button', { type: 'button', className: 'ra-close', onclick: opts.onClose, 'aria-label': 'Close the profile', text: 'Close' }) : null
    ]);
    container.appendChild(el('header', { className: 'ra-p-head' }, [
      el('h2', { id: 'ra-panel-title', 'data-code': loc.code }, [loc.name || loc.code, ' ', el('span', { className: 'ra-code', text: loc.code })]),
      el('p', { className: 'ra-hint', text: 'Admin level ' + loc.level + (loc.parent_code ? ', in ' + loc.parent_code : '') +
        '. Score run ' + run.id + (run.completed_at ? ' of ' + run.completed_at.slice(0, 10) : '') +
        (method.name ? ', methodology ' + method.name + ' v' + method.version : '') + '.' }),
      actions
    ]));
    [summary(p), pillars(p), dimensions(p), drivers(p), hazards(p), access(p), conflict(p),
      subgroups(p, opts.print ? 8 : 10), trend(p), priorities(p), institutions(p)]
      .forEach(function (node) { if (node) { container.appendChild(node); } });
  };

  /** Show a loading or error message in the panel instead of a blank. */
  RA.panelMessage = function (container, text, isError, onRetry) {
    RA.clear(container);
    container.appendChild(el('p', { className: isError ? 'ra-error' : 'ra-loading-text', role: isError ? 'alert' : 'status', text: text }));
    if (onRetry) { container.appendChild(el('button', { type: 'button', onclick: onRetry, text: 'Try again' })); }
  };
}());
