"""{{Name}}: a switchyard connector (contract switchyard:connector@0.2.1, world `connector`).

The vendor API below is a placeholder to adapt to {{Name}}'s real one:

- `POST {api-base}/invitations` with `Authorization: Bearer <api-key>`, `Idempotency-Key: <key>`
  and `{"reference", "email", "name", "package", "callback_url"}` -> `201 {"id", "status"}`;
- `GET {api-base}/invitations?reference=<key>` -> `{"invitations": [{"id", "status", ...}]}`;
- callbacks: `POST` with `{"id", "status", "report_url"}`, `X-Timestamp: <unix seconds>` and
  `X-Signature: <hex HMAC-SHA256(webhook-secret, "<timestamp>.<body>")>`.

If {{Name}} cannot find an order by our reference, change `find_earlier` (see `lookup.py`: a field
the vendor stores and lists by, a search by email and time window, or `raise lookup.no_lookup(VENDOR)`
so that the host holds the event for an operator instead of inviting twice).

Every function takes a `host` (`wasm_host.WasmHost` in the component, `tests/fake_host.FakeHost`
in the unit tests). Errors are raised as `Err(ConnectorError_...)`.
"""

import json

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.crypto import Encoding
from wit_world.imports.log import Level
from wit_world.imports.outbound_http import HttpError_Denied, HttpError_Invalid, OutgoingRequest

import lookup
from text import first_non_empty, header, urlencode

VENDOR = "{{Name}}"
TIMEOUT_MS = 10_000
TOLERANCE_SECS = 300

LABEL_PENDING = "{{Name}} - Pending"
LABEL_IN_PROGRESS = "{{Name}} - In Progress"
LABEL_COMPLETE = "{{Name}} - Complete"
LABEL_CANCELLED = "{{Name}} - Cancelled"
LABEL_NO_EMAIL = "{{Name}} - ERROR (No Email)"
# Vendor status -> (state, label).
STATUSES = {
    "pending": (types.ScreeningState.PENDING, LABEL_PENDING),
    "in_progress": (types.ScreeningState.ANALYZING, LABEL_IN_PROGRESS),
    "complete": (types.ScreeningState.COMPLETE, LABEL_COMPLETE),
    "cancelled": (types.ScreeningState.CANCELLED, LABEL_CANCELLED),
}


def config_error(message):
    return Err(types.ConnectorError_Config(message))


def manifest():
    """Called when the host loads the component; must not call any import."""
    return types.Manifest(
        id="{{name}}",
        version="0.1.0",
        display_name="{{Name}}",
        config_fields=[
            types.ConfigField("api-base", "{{Name}} API base URL, e.g. https://api.example.com", False, True),
            types.ConfigField("api-key", "{{Name}} API key", True, True),
            types.ConfigField("webhook-secret", "Secret {{Name}} signs callbacks with (HMAC-SHA256)", True, True),
        ],
        # The hosts this connector calls by default; the operator approves others per integration.
        outbound_hosts=["api.example.com"],
        status_labels=[LABEL_PENDING, LABEL_IN_PROGRESS, LABEL_COMPLETE, LABEL_CANCELLED, LABEL_NO_EMAIL],
        default_trigger_stage=None,
        verdict_labels=[],
        # componentize-py components have 14 core instances and need ~32 MiB of memory.
        limits=types.ResourceNeeds(memory_mib=32, instances=14),
    )


def list_packages(host):
    packages = host.packages()
    if not packages:
        raise config_error("no packages are configured")
    return packages


def status(state, label, report_url=None):
    return types.Status(state=state, label=label, report_url=report_url, score=None, verdict=None, note=None)


def setting(host, key):
    value = (host.config_get(key) or "").strip()
    if not value:
        raise config_error("missing setting `%s`" % key)
    return value


def secret(host, key):
    value = (host.secret(key) or "").strip()
    if not value:
        raise config_error("missing secret `%s`" % key)
    return value


class Failed(Exception):
    """A vendor call that failed: the error, and whether the vendor may still have acted on it."""

    def __init__(self, error, may_have_placed=True):
        super().__init__(error)
        self.error = error
        self.may_have_placed = may_have_placed


def call(host, method, url, api_key, body=b"", headers=()):
    """One request; any answer but a 2xx becomes `Failed` with the contract's error kind."""
    request = OutgoingRequest(
        method=method,
        url=url,
        headers=[("authorization", "Bearer " + api_key), ("accept", "application/json")] + list(headers),
        body=body,
        timeout_ms=TIMEOUT_MS,
    )
    try:
        response = host.send(request)
    except Err as e:
        if isinstance(e.value, (HttpError_Denied, HttpError_Invalid)):
            # Never sent: approve the host or fix api-base.
            raise Failed(config_error("cannot call %s: %s" % (VENDOR, e.value.value)), may_have_placed=False)
        raise Failed(Err(types.ConnectorError_Transient("%s did not answer" % VENDOR)))
    code = response.status
    if 200 <= code <= 299:
        try:
            return json.loads(response.body)
        except ValueError:
            raise Failed(Err(types.ConnectorError_Transient("%s answered %d with a body that is not JSON" % (VENDOR, code))))
    # A 4xx or a 503 proves nothing happened; other failures may have.
    untouched = 400 <= code <= 499 or code == 503
    if code in (401, 403):
        raise Failed(config_error("%s rejected the credentials (%d)" % (VENDOR, code)), not untouched)
    if code in (408, 429) or code >= 500:
        raise Failed(Err(types.ConnectorError_Transient("%s answered %d" % (VENDOR, code))), not untouched)
    raise Failed(Err(types.ConnectorError_Rejected("%s answered %d" % (VENDOR, code))), not untouched)


def start_screening(host, request):
    email = first_non_empty(request.candidate.emails)
    if email is None:
        return types.Started(order_ref=None, status=status(types.ScreeningState.ERROR, LABEL_NO_EMAIL))

    key = request.idempotency_key
    order_key, intent_key = "order:" + key, "intent:" + key
    # The contract's idempotency pattern (wit/connector.wit, `state.set-for-screening`; the host drops both entries when it records the order).
    recorded = host.state_get(order_key)
    if recorded is not None:
        return types.Started(order_ref=recorded, status=status(types.ScreeningState.PENDING, LABEL_PENDING))

    base = setting(host, "api-base").rstrip("/")
    api_key = secret(host, "api-key")
    packages = list_packages(host)
    chosen = next((p for p in packages if request.package is not None and p.name.lower() == request.package.strip().lower()), None)
    if request.package is not None and chosen is None:
        raise Err(types.ConnectorError_Rejected("unknown package %s" % json.dumps(request.package)))
    chosen = chosen or next((p for p in packages if p.is_default), packages[0])

    if host.state_get(intent_key) is not None:
        # An earlier attempt may have reached the vendor: find its order before inviting again.
        invitation = find_earlier(host, base, api_key, key)
        if invitation is not None:
            host.state_set_for_screening(key, order_key, invitation["id"])
            host.state_delete(intent_key)
            state, label = STATUSES.get(str(invitation.get("status")), STATUSES["pending"])
            return types.Started(order_ref=invitation["id"], status=status(state, label))
    else:
        host.state_set_for_screening(key, intent_key, str(host.now_unix()))

    body = json.dumps({
        "reference": key,
        "email": email,
        "name": request.candidate.name.strip(),
        "package": chosen.name,
        "callback_url": host.callback_url(),
    }).encode()
    try:
        invitation = call(host, "POST", base + "/invitations", api_key, body, [("content-type", "application/json"), ("idempotency-key", key)])
    except Failed as f:
        if not f.may_have_placed:
            host.state_delete(intent_key)
        raise f.error
    invitation_id = invitation.get("id") if isinstance(invitation, dict) else None
    if not isinstance(invitation_id, str) or not invitation_id:
        raise Err(types.ConnectorError_Transient("%s answered without an invitation id" % VENDOR))
    host.state_set_for_screening(key, order_key, invitation_id)
    host.state_delete(intent_key)
    host.log(Level.INFO, "invitation sent", [("order-ref", invitation_id), ("package", chosen.name)])
    return types.Started(order_ref=invitation_id, status=status(types.ScreeningState.PENDING, LABEL_PENDING))


def find_earlier(host, base, api_key, key):
    """The invitation an earlier attempt placed for `key`, or None (then the retry invites).

    Step 3 of the idempotency pattern (docs/connectors.md). This vendor lists invitations by our
    reference; see lookup.py for one that cannot (`lookup.by_field`, `lookup.by_email_since`, or
    `raise lookup.no_lookup(VENDOR)`)."""
    try:
        found = call(host, "GET", "%s/invitations?reference=%s" % (base, urlencode(key)), api_key)
    except Failed as f:
        raise f.error
    listed = found.get("invitations", []) if isinstance(found, dict) else []
    invitations = [i for i in listed if isinstance(i, dict) and isinstance(i.get("id"), str)]
    # A vendor that ignores the filter would list others: keep only ours (or unlabelled ones).
    return lookup.by_field(invitations, key, lambda i: i.get("reference", key))


def reply(code, body, updates=()):
    response = types.HttpResponse(status=code, headers=[("content-type", "application/json")], body=body.encode())
    return types.CallbackResult(response=response, updates=list(updates))


def handle_callback(host, request):
    if request.method.upper() != "POST":
        return reply(405, '{"error":"method not allowed"}')
    webhook_secret = secret(host, "webhook-secret")
    timestamp = (header(request.headers, "x-timestamp") or "").strip()
    signature = (header(request.headers, "x-signature") or "").strip()
    fresh = timestamp.isdigit() and timestamp.isascii() and len(timestamp) <= 12 and abs(host.now_unix() - int(timestamp)) <= TOLERANCE_SECS
    # The host's crypto import computes the HMAC and compares in constant time.
    if not fresh or not host.verify_hmac_sha256(webhook_secret.encode(), timestamp.encode() + b"." + request.body, signature, Encoding.HEX):
        host.log(Level.WARN, "rejected a callback with a bad or stale signature", [])
        return reply(401, '{"error":"invalid signature"}')
    try:
        event = json.loads(request.body)
        order_ref, vendor_status = event["id"], event["status"]
        if not isinstance(order_ref, str) or not isinstance(vendor_status, str):
            raise ValueError("id and status must be strings")
    except (ValueError, KeyError, TypeError):
        return reply(400, '{"error":"malformed body"}')
    mapped = STATUSES.get(vendor_status.strip().lower())
    if mapped is None:
        # Authentic but unknown: acknowledge so the vendor stops retrying, change nothing.
        host.log(Level.WARN, "ignored a callback with an unknown status", [("order-ref", order_ref)])
        return reply(200, '{"ok":true}')
    report_url = event.get("report_url") if isinstance(event.get("report_url"), str) else None
    update = types.StatusUpdate(order_ref=order_ref, status=status(mapped[0], mapped[1], report_url))
    return reply(200, '{"ok":true}', [update])
