#!/usr/bin/env bash
# Audit the locked dependencies (requirements-test.lock: the app and its test tools) for known
# vulnerabilities with pip-audit, against whichever database this machine can reach:
# PyPI's per-release JSON API (the default service) or OSV. If neither answers, say so and
# exit 2: an audit that could look nothing up must not read as "no vulnerabilities".
# Exit status: 0 audited and clean, 1 vulnerabilities found (or audit failed), 2 not audited.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=${1:-requirements-test.lock}
py=.venv/bin/python

# Which vulnerability database answers? (a real release of a real package, each with a
# short timeout). RISKATLAS_AUDIT_SERVICE=pypi|osv skips the probe.
service=${RISKATLAS_AUDIT_SERVICE:-}
[ -n "$service" ] || service=$("$py" - <<'PY'
import json, urllib.error, urllib.request

def answers(url, data=None):
    try:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False

if answers("https://pypi.org/pypi/pip-audit/2.7.0/json"):
    print("pypi")
elif answers("https://api.osv.dev/v1/query", json.dumps({"package": {"name": "pip-audit", "ecosystem": "PyPI"}, "version": "2.7.0"}).encode()):
    print("osv")
else:
    print("none")
PY
)

if [ "$service" = "none" ]; then
  cat >&2 <<MSG
audit: NOT AUDITED - no vulnerability database is reachable from this machine:
  PyPI's per-release JSON API (https://pypi.org/pypi/<name>/<version>/json) did not answer
  200, and OSV (https://api.osv.dev) could not be reached. Run \`make audit\` where one of
  them is reachable (any machine with internet access); $lock pins what to audit.
MSG
  exit 2
fi

echo "audit: checking $lock against the $service vulnerability database" >&2
# --strict: a package that could not be looked up fails the audit instead of being skipped.
exec .venv/bin/pip-audit --requirement "$lock" --require-hashes --disable-pip --strict \
  --vulnerability-service "$service" --progress-spinner off
