/* riskatlas: helpers shared by the map, print and upload pages (no dependencies). */
(function () {
  'use strict';

  var RA = window.RA = window.RA || {};

  /** The JSON config the server put in the page (URLs from url_for). */
  RA.config = function (id) {
    return JSON.parse(document.getElementById(id || 'ra-config').textContent);
  };

  /** Fill a URL template's placeholder with a URL-encoded value. */
  RA.fill = function (template, placeholder, value) {
    return template.split(placeholder).join(encodeURIComponent(value));
  };

  /** Append query parameters (skipping empty ones) to a path. */
  RA.withQuery = function (path, params) {
    var parts = [];
    Object.keys(params || {}).forEach(function (key) {
      var value = params[key];
      if (value === null || value === undefined || value === '' || value === false) { return; }
      parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(value));
    });
    return parts.length ? path + (path.indexOf('?') >= 0 ? '&' : '?') + parts.join('&') : path;
  };

  /** An error whose message is fit to show to a person. */
  function ApiError(message, status, body) {
    this.name = 'ApiError';
    this.message = message;
    this.status = status;
    this.body = body;
  }
  ApiError.prototype = Object.create(Error.prototype);
  RA.ApiError = ApiError;

  /** Words for an API error body ({code, message, details}) or a bare status. */
  RA.describeError = function (status, body) {
    var text = body && (body.message || body.detail);
    if (Array.isArray(text)) { text = text.map(function (d) { return d.msg || String(d); }).join('; '); }
    if (!text) {
      text = status === 404 ? 'not found' : status >= 500 ? 'the server had a problem'
        : 'the request was refused';
    }
    var details = (body && Array.isArray(body.details)) ? body.details : [];
    var extra = details.map(function (d) {
      if (!d || typeof d !== 'object') { return String(d); }
      var where = d.field || d.file || d.column || '';
      var what = d.problem || d.message || '';
      return (where ? where + ': ' : '') + what;
    }).filter(function (s) { return s && s !== ': '; });
    return { text: String(text), details: extra, status: status };
  };

  /**
   * GET a JSON document with a time limit; rejects with an ApiError that says what went wrong
   * in words (slow server, HTTP status and the API's message, or no network).
   */
  RA.getJSON = function (url, options) {
    var timeoutMs = (options && options.timeoutMs) || 20000;
    var controller = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) { controller.abort(); } }, timeoutMs);
    return fetch(url, { headers: { Accept: 'application/json' }, signal: controller && controller.signal })
      .then(function (response) {
        clearTimeout(timer);
        return response.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
          if (!response.ok) {
            var described = RA.describeError(response.status, body);
            throw new ApiError('The server answered ' + response.status + ': ' + described.text,
              response.status, body);
          }
          return body;
        });
      }, function (error) {
        clearTimeout(timer);
        if (error && error.name === 'AbortError') {
          throw new ApiError('The server did not answer within ' + Math.round(timeoutMs / 1000) +
            ' s; it may be busy. Try again in a moment.', 0, null);
        }
        throw new ApiError('The server could not be reached (' + (error && error.message) + ').', 0, null);
      });
  };

  /** A number for people: fixed decimals, thousands separators, "—" when missing. */
  RA.fmt = function (value, decimals) {
    if (value === null || value === undefined || (typeof value === 'number' && !isFinite(value))) { return '—'; }
    if (typeof value !== 'number') { return String(value); }
    var d = decimals === undefined ? 2 : decimals;
    return value.toLocaleString('en-GB', { minimumFractionDigits: d, maximumFractionDigits: d });
  };

  RA.pct = function (share, decimals) {
    if (share === null || share === undefined) { return '—'; }
    return RA.fmt(share * 100, decimals === undefined ? 1 : decimals) + ' %';
  };

  /** Create an element with attributes and children (strings become text, never HTML). */
  RA.el = function (tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) { return; }
      if (key === 'text') { node.textContent = value; }
      else if (key === 'className') { node.className = value; }
      else if (key.slice(0, 2) === 'on' && typeof value === 'function') { node.addEventListener(key.slice(2), value); }
      else if (key === 'style' && typeof value === 'object') { Object.keys(value).forEach(function (p) { node.style[p] = value[p]; }); }
      else { node.setAttribute(key, value === true ? '' : String(value)); }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) { return; }
      node.appendChild(typeof child === 'string' || typeof child === 'number'
        ? document.createTextNode(String(child)) : child);
    });
    return node;
  };

  /** Text made safe for the few places Leaflet takes HTML strings (control labels, icons). */
  RA.escapeHtml = function (text) {
    return String(text).replace(/[&<>"']/g, function (ch) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch];
    });
  };

  RA.clear = function (node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; };

  /** Words for identifiers such as `lack_of_coping_capacity` or `hot_95`. */
  RA.words = function (id) {
    var known = {
      hazard_exposure: 'Hazard & exposure', vulnerability: 'Vulnerability',
      lack_of_coping_capacity: 'Lack of coping capacity',
      hot_99: 'Hot spot (99 % confidence)', hot_95: 'Hot spot (95 % confidence)',
      hot_90: 'Hot spot (90 % confidence)', cold_99: 'Cold spot (99 % confidence)',
      cold_95: 'Cold spot (95 % confidence)', cold_90: 'Cold spot (90 % confidence)',
      not_significant: 'Not a significant cluster',
      high_need_high_vulnerability: 'High need, high vulnerability (act first)',
      high_need_low_vulnerability: 'High need, lower vulnerability',
      low_need_high_vulnerability: 'Lower need, high vulnerability (at risk next)',
      low_need_low_vulnerability: 'Lower need, lower vulnerability'
    };
    if (id === null || id === undefined) { return '—'; }
    if (known[id]) { return known[id]; }
    var text = String(id).replace(/_/g, ' ');
    return text.charAt(0).toUpperCase() + text.slice(1);
  };
}());
