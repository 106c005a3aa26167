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
      el('span', { className: 'ra-bar-value', text: (value === null || value === undefined ? 'no data' : fmt(value, 1)) + (stressed ? ' stressed' : '') })
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

  var RELIABILITY = { reliable: 'reliable', caution: 'use with caution', unreliable: 'unreliable', unknown: 'no interval' };

  /** "34.2 (28.1–40.6)": an estimate with its interval, on the value's own scale. */
  function withCi(value, low, high, decimals) {
    if (value === null || value === undefined) { return '—'; }
    var text = fmt(value, decimals);
    if (low === null || low === undefined || high === null || high === undefined) { return text; }
    return text + ' (' + fmt(low, decimals) + '–' + fmt(high, decimals) + ')';
  }

  function signed(value, decimals) {
    if (value === null || value === undefined) { return '—'; }
    return (value > 0 ? '+' : '') + fmt(value, decimals);
  }

  /** A subgroup key as people read it: "disability=yes; sex=female" wraps at the spaces. */
  function group(key) { return String(key || '').split(';').join('; '); }

  function reliabilityTag(word) {
    return el('span', { className: 'ra-rel ra-rel-' + (word || 'unknown'), text: RELIABILITY[word] || '—' });
  }

  function withheldNote(p, count) {
    if (!count) { return null; }
    return el('p', { className: 'ra-hint', 'data-field': 'withheld-count', text: count + ' cell' + (count > 1 ? 's' : '') +
      ' withheld: fewer than ' + (p.k_min || 'the minimum number of') + ' people answered, or showing ' +
      (count > 1 ? 'them' : 'it') + ' would let a withheld neighbour be worked out. No value or interval is shown for ' +
      (count > 1 ? 'them' : 'it') + '.' });
  }

  function subgroupRow(s) {
    // reliability sits under the value it qualifies, so the table fits the panel
    return [words(s.indicator), group(s.subgroup),
      el('span', {}, [withCi(s.value, s.ci_low, s.ci_high, 1), el('br'),
        fmt(s.sample_size, 0) + ' answers, ', reliabilityTag(s.reliability)]),
      withCi(s.gap_locality, s.gap_locality_ci_low, s.gap_locality_ci_high, 1),
      signed(s.gap_national, 1) + (s.behind_national ? ' (behind)' : '')];
  }

  function subgroups(p, limit) {
    var all = p.subgroups || [];
    if (!all.length) {
      return section('Who is furthest behind here', [el('p', { text: p.subgroups_visible === false
        ? 'No subgroup survey data for this locality.' : 'No subgroup data for this locality.' })], 'ra-h-sub');
    }
    var visible = all.filter(function (s) { return !s.withheld; });
    var behind = visible.filter(function (s) { return s.status === 'behind'; })
      .sort(function (a, b) { return (b.gap_locality || 0) - (a.gap_locality || 0); }).slice(0, limit || 10);
    var possible = visible.filter(function (s) { return s.status === 'possible_gap'; })
      .sort(function (a, b) { return (b.gap_locality || 0) - (a.gap_locality || 0); }).slice(0, limit || 10);
    var head = ['Indicator', 'Group', 'Value (interval)', 'Gap vs locality (interval)', 'Gap vs national'];
    var level = p.multidimensional && p.multidimensional.confidence_level;
    var children = [
      el('p', { className: 'ra-hint', text: 'Behind: worse off than the locality as a whole, and the gap’s interval lies above zero' +
        ' (positive gaps are always “worse off”). Unreliable cells are never listed as behind.' }),
      behind.length ? table(null, head, behind.map(subgroupRow), 'ra-subgroups ra-behind')
        : el('p', { 'data-field': 'no-behind', text: 'No group is behind beyond noise here.' })
    ];
    if (possible.length) {
      children.push(el('h4', { text: 'Possible gaps (within noise: not yet a finding)' }));
      children.push(table(null, head, possible.map(subgroupRow), 'ra-subgroups ra-possible'));
    }
    children.push(withheldNote(p, all.length - visible.length));
    return section('Who is behind here, beyond noise' + (level ? ' (' + Math.round(level * 100) + ' %)' : ''), children, 'ra-h-sub');
  }

  function multidimensional(p, limit) {
    var md = p.multidimensional;
    if (!md) { return null; }
    if (md.method !== 'alkire_foster') {
      return section('Deprived in several dimensions at once', [
        el('p', { 'data-field': 'md-method', 'data-value': md.method, text: 'Stressed dimensions of the place: ' + fmt(p.stressed_dimensions, 0) + '. ' + md.note + '.' }),
        compoundedFromIndicators(p)
      ], 'ra-h-md');
    }
    var own = md.all || {};
    var facts = own.withheld ? [el('p', { text: 'Withheld: the survey reached too few people here.' })] : [
      el('dl', { className: 'ra-facts' }, [
        fact('Multidimensionally poor (H)', withCi(pctOf(own.H), pctOf(own.H_ci_low), pctOf(own.H_ci_high), 1) + ' %', 'md-H', own.H),
        fact('Intensity among them (A)', withCi(pctOf(own.A), pctOf(own.A_ci_low), pctOf(own.A_ci_high), 1) + ' %', 'md-A', own.A),
        fact('Adjusted headcount (M0 = H × A)', withCi(own.M0, own.M0_ci_low, own.M0_ci_high, 3), 'md-M0', own.M0),
        fact('Change of M0 since ' + ((own.change && own.change.baseline_period) || 'baseline'),
          own.change && own.change.M0 ? signed(own.change.M0.change, 3) + ' (' + fmt(own.change.M0.ci_low, 3) + '–' +
            fmt(own.change.M0.ci_high, 3) + '): ' + own.change.M0.status : '—', 'md-change', own.change && own.change.M0 && own.change.M0.status),
        fact('People surveyed', fmt(own.sample_size, 0) + ', ' + RELIABILITY[own.reliability], 'md-n', own.sample_size)
      ])];
    var codes = Object.keys(md.weights || {});
    var contrib = own.withheld ? null : table('What the poverty is made of (censored headcount; contribution to M0)',
      ['Indicator', 'Weight', 'Poor and deprived', 'Contribution'], codes.map(function (c) {
        var x = (own.indicators || {})[c] || {};
        return [words(c), fmt(md.weights[c], 2), pct(x.censored), pct(x.contribution)];
      }), 'ra-md-contrib');
    var groups = (md.groups || []).filter(function (g) { return !g.withheld; });
    groups.sort(function (a, b) {
      var rank = { behind: 0, possible_gap: 1 };
      var ra = rank[a.status] === undefined ? 2 : rank[a.status], rb = rank[b.status] === undefined ? 2 : rank[b.status];
      return ra - rb || (b.M0 || 0) - (a.M0 || 0);
    });
    var rows = groups.slice(0, limit || 12).map(function (g) {
      return [el('span', {}, [group(g.subgroup), el('br'), fmt(g.sample_size, 0) + ' people, ', reliabilityTag(g.reliability)]),
        withCi(pctOf(g.H), pctOf(g.H_ci_low), pctOf(g.H_ci_high), 0) + ' %', pct(g.A, 0),
        withCi(g.M0, g.M0_ci_low, g.M0_ci_high, 3), words(g.status || '')];
    });
    return section('Deprived in several dimensions at once (Alkire–Foster, k = ' + fmt(md.k * 100, 0) + ' %)', facts.concat([
      el('p', { className: 'ra-hint', text: 'From the ' + md.period + ' household survey: a person is multidimensionally poor when deprived in at least ' +
        fmt(md.k * 100, 0) + ' % of the weighted indicators. Intervals from the sampling weights, households as clusters.' }),
      contrib,
      rows.length ? table('Groups, behind first', ['Group', 'Poor (H)', 'Intensity (A)', 'M0 (interval)', 'Versus the locality'], rows, 'ra-md-groups') : null,
      withheldNote(p, (md.groups || []).length - groups.length)
    ]), 'ra-h-md');
  }

  function pctOf(share) { return share === null || share === undefined ? null : share * 100; }

  function compoundedFromIndicators(p) {
    var list = (p.compounded_groups || []).filter(function (c) { return !c.withheld && c.method === 'indicator_cutoffs'; });
    if (!list.length) { return el('p', { className: 'ra-hint', text: 'No subgroup is beyond the cutoffs in ' + ((p.run && p.run.methodology && p.run.methodology.k) || 'k') + ' or more dimensions.' }); }
    return table('Groups beyond the cutoffs in several dimensions (from group averages, not Alkire–Foster)',
      ['Group', 'Dimensions', 'Beyond noise', 'Answers'], list.map(function (c) {
        return [group(c.subgroup), c.deprived_dimensions + ': ' + c.dimensions.map(words).join(', '),
          (c.dimensions_beyond_noise || []).map(words).join(', ') || 'none', fmt(c.sample_size, 0)];
      }), 'ra-compounded');
  }

  function trend(p) {
    var names = Object.keys(p.trend || {}).sort();
    if (!names.length) { return null; }
    var first = p.trend[names[0]];
    var rows = names.map(function (name) {
      var t = p.trend[name];
      return [words(name), withCi(t.baseline, t.baseline_ci_low, t.baseline_ci_high, 1), withCi(t.followup, t.followup_ci_low, t.followup_ci_high, 1),
        withCi(t.change, t.change_ci_low, t.change_ci_high, 1), t.change_status || '—', t.target_status || '—'];
    });
    var head = ['Indicator', 'Baseline' + (first.baseline_period ? ' ' + first.baseline_period : ''),
      'Follow-up' + (first.followup_period ? ' ' + first.followup_period : ''), 'Change (interval)', 'Verdict', 'Target'];
    return section('Trend, baseline → follow-up', [table(null, head, rows, 'ra-trend'),
      el('p', { className: 'ra-hint', text: '“improved” or “worsened” only where the change’s interval excludes zero; otherwise “no clear change”.' })], 'ra-h-trend');
  }

  function gapTrends(p, limit) {
    var all = p.gap_trends || [];
    if (!all.length) { return null; }
    var visible = all.filter(function (t) { return !t.withheld; });
    var order = { 'gap narrowed': 0, 'gap widened': 1 };
    visible.sort(function (a, b) {
      var oa = order[a.gap_status] === undefined ? 2 : order[a.gap_status], ob = order[b.gap_status] === undefined ? 2 : order[b.gap_status];
      return oa - ob || Math.abs(b.gap_change || 0) - Math.abs(a.gap_change || 0);
    });
    var rows = visible.slice(0, limit || 12).map(function (t) {
      return [words(t.indicator), group(t.subgroup), signed(t.gap_baseline, 1) + ' → ' + signed(t.gap_followup, 1),
        withCi(t.gap_change, t.gap_change_ci_low, t.gap_change_ci_high, 1), t.gap_status || '—'];
    });
    return section('Are the gaps narrowing? (beyond noise)', [
      table(null, ['Indicator', 'Group', 'Gap ' + (all[0].baseline_period || '') + ' → ' + (all[0].followup_period || ''), 'Change of the gap (interval)', 'Verdict'], rows, 'ra-gap-trends'),
      withheldNote(p, all.length - visible.length)
    ], 'ra-h-gaps');
  }

  function exposedBySubgroup(p) {
    var names = Object.keys(p.hazards || {}).filter(function (n) { return p.hazards[n].people_exposed_by_subgroup; });
    if (!names.length) { return null; }
    var keys = {};
    names.forEach(function (n) { Object.keys(p.hazards[n].people_exposed_by_subgroup).forEach(function (k) { keys[k] = true; }); });
    var groups = Object.keys(keys).sort();
    // one row per group and a column per layer: there are few layers and many groups
    var rows = groups.map(function (g) {
      return [group(g)].concat(names.map(function (n) {
        var split = p.hazards[n].people_exposed_by_subgroup;
        return !(g in split) ? '—' : split[g] === null ? 'withheld' : fmt(split[g], 0);
      }));
    });
    return section('People exposed, by group', [table(null, ['Group'].concat(names), rows, 'ra-exposed-groups')], 'ra-h-exposed');
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
    [summary(p), pillars(p), dimensions(p), drivers(p), hazards(p), exposedBySubgroup(p), access(p), conflict(p),
      subgroups(p, opts.print ? 8 : 10), multidimensional(p, opts.print ? 10 : 12), trend(p),
      gapTrends(p, opts.print ? 8 : 12), priorities(p), institutions(p)]
      .forEach(function (node) { if (node) { container.appendChild(node); } });
  };

  /** Show a loading or error message in the panel instead of a blank. */
  RA.panelMessage = function (container, text, isError, onRetry) {
    RA.clear(container);
    container.appendChild(el('p', { className: isError ? 'ra-error' : 'ra-loading-text', role: isError ? 'alert' : 'status', text: text }));
    if (onRetry) { container.appendChild(el('button', { type: 'button', onclick: onRetry, text: 'Try again' })); }
  };
}());
