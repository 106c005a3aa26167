/* riskatlas: upload a hazard GeoTIFF with upload progress (XHR) and job progress (polling). */
(function () {
  'use strict';
  var RA = window.RA;
  var el = RA.el;
  var config = RA.config();
  var form = document.getElementById('ra-upload');
  var submit = document.getElementById('ra-submit');
  var progressBox = document.getElementById('ra-upload-progress');
  var bytesBar = document.getElementById('ra-bytes');
  var jobBar = document.getElementById('ra-job');
  var statusLine = document.getElementById('ra-upload-status');
  var resultBox = document.getElementById('ra-upload-result');
  var POLL_MS = 500;

  function value(id) { return document.getElementById(id).value.trim(); }

  function number(id) {
    var text = value(id);
    return text === '' ? null : Number(text);
  }

  /** The options the API validates (`options` JSON), built from the form. */
  function options() {
    var levels = {};
    ['low', 'medium', 'high'].forEach(function (level) {
      var n = number('ra-t-' + level);
      if (n !== null) { levels[level] = n; }
    });
    var result = { name: value('ra-name'), kind: value('ra-kind'), polarity: value('ra-polarity') };
    if (value('ra-unit')) { result.unit = value('ra-unit'); }
    if (number('ra-threshold') !== null) { result.threshold = number('ra-threshold'); }
    if (Object.keys(levels).length) { result.level_thresholds = levels; }
    if (value('ra-description')) { result.description = value('ra-description'); }
    return result;
  }

  /** Problems the browser can see before sending anything, in words. */
  function localProblems() {
    var problems = [];
    var file = document.getElementById('ra-file').files[0];
    if (!file) { problems.push('Choose a GeoTIFF file.'); }
    if (!value('ra-name')) { problems.push('Give the layer a name.'); }
    if (!value('ra-key')) { problems.push('Enter an API key with the uploader role.'); }
    ['ra-threshold', 'ra-t-low', 'ra-t-medium', 'ra-t-high'].forEach(function (id) {
      if (value(id) !== '' && !isFinite(Number(value(id)))) { problems.push('“' + document.querySelector('label[for=' + id + ']').textContent + '” must be a number.'); }
    });
    return problems;
  }

  function showResult(ok, title, lines, link) {
    RA.clear(resultBox);
    var box = el('div', { className: 'ra-result' + (ok ? '' : ' ra-failed'), role: ok ? 'status' : 'alert', id: ok ? 'ra-success' : 'ra-failure' }, [
      el('p', {}, [el('strong', { text: title })]),
      lines && lines.length ? el('ul', {}, lines.map(function (line) { return el('li', { text: line }); })) : null,
      link || null
    ]);
    resultBox.appendChild(box);
    box.focus && box.setAttribute('tabindex', '-1');
    box.focus();
  }

  function fail(status, body) {
    var described = RA.describeError(status, body);
    var title = status === 401 ? 'This needs an API key with the uploader role.'
      : status === 403 ? 'This key may not upload: it needs the uploader role.'
      : status === 413 ? 'The file is too large.'
      : 'The upload was refused: ' + described.text;
    var lines = described.details.slice();
    if (status === 401 || status === 403 || status === 413) { lines.unshift(described.text); }
    showResult(false, title, lines.concat(['Nothing was stored.']));
    finish();
  }

  function finish() {
    submit.disabled = false;
    form.removeAttribute('aria-busy');
  }

  function poll(statusUrl, layerName) {
    RA.getJSON(statusUrl, { timeoutMs: 15000 }).then(function (job) {
      jobBar.value = Math.round((job.progress || 0) * 100);
      statusLine.textContent = 'Processing: ' + Math.round((job.progress || 0) * 100) + ' %' + (job.message ? ' — ' + job.message : '');
      if (job.status === 'succeeded') {
        var url = RA.withQuery(config.urls.map_page, { hazard: layerName });
        var version = job.result && job.result.version ? ' (version ' + job.result.version + ')' : '';
        // The job's own message is often a bare "done"; say what a person can do next instead.
        var said = job.message && job.message !== 'done' ? [job.message] : [];
        showResult(true, 'Loaded “' + layerName + '”' + version + '.', said.concat(['It is listed under “Hazard layers” on the map.']),
          el('a', { href: url, id: 'ra-open-map', text: 'Open the map with this layer on' }));
        finish();
      } else if (job.status === 'failed') {
        statusLine.textContent = 'Processing stopped: the file was refused.';
        var lines = (job.errors || []).map(function (e) {
          var where = e.field || e.file || '';
          return (where ? where + ': ' : '') + (e.problem || e.message || JSON.stringify(e));
        });
        showResult(false, 'The layer could not be loaded: ' + (job.message || 'the job failed') + '.', lines.concat(['Nothing was stored.']));
        finish();
      } else {
        setTimeout(function () { poll(statusUrl, layerName); }, POLL_MS);
      }
    }, function (error) {
      // A slow or unreachable server during polling: say so and keep trying.
      statusLine.textContent = 'Still waiting for the server (' + error.message + ')…';
      setTimeout(function () { poll(statusUrl, layerName); }, POLL_MS * 4);
    });
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    RA.clear(resultBox);
    var problems = localProblems();
    if (problems.length) { showResult(false, 'Please fix these first:', problems); return; }
    var opts = options();
    var data = new FormData();
    data.append('file', document.getElementById('ra-file').files[0]);
    data.append('options', JSON.stringify(opts));
    var xhr = new XMLHttpRequest();
    xhr.open('POST', config.urls.upload_hazard);
    xhr.setRequestHeader('Authorization', 'Bearer ' + value('ra-key'));
    xhr.setRequestHeader('Accept', 'application/json');
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    progressBox.hidden = false;
    bytesBar.value = 0; jobBar.value = 0;
    statusLine.textContent = 'Uploading…';
    xhr.upload.addEventListener('progress', function (e) {
      if (e.lengthComputable) {
        bytesBar.value = Math.round(e.loaded / e.total * 100);
        statusLine.textContent = 'Uploading: ' + bytesBar.value + ' % of ' + RA.fmt(e.total / 1048576, 1) + ' MB';
      }
    });
    xhr.addEventListener('load', function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      bytesBar.value = 100;
      if (xhr.status === 202 || xhr.status === 201) {
        statusLine.textContent = 'Uploaded; the server is checking and loading the layer…';
        poll(body.status_url, opts.name);
      } else {
        statusLine.textContent = 'The upload was refused (HTTP ' + xhr.status + ').';
        fail(xhr.status, body);
      }
    });
    xhr.addEventListener('error', function () {
      statusLine.textContent = '';
      showResult(false, 'The server could not be reached; the file was not uploaded.', []);
      finish();
    });
    xhr.send(data);
  });
}());
