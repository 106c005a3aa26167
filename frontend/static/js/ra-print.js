/* riskatlas: the printable one-page profile of a locality. */
(function () {
  'use strict';
  var RA = window.RA;
  var config = RA.config();
  var box = document.getElementById('ra-profile');
  document.getElementById('ra-print-button').addEventListener('click', function () { window.print(); });
  RA.getJSON(RA.fill(config.urls.risk, config.placeholders.code, config.code)).then(function (profile) {
    RA.renderProfile(box, profile, { print: true });
    document.title = 'Profile of ' + profile.locality.name + ' (' + profile.locality.code + ') — riskatlas';
  }, function (error) {
    RA.panelMessage(box, 'The profile could not load. ' + error.message, true, function () { window.location.reload(); });
  });
}());
