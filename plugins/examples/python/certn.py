"""Certn background checks: a switchyard connector written in Python.

It speaks the Certn v1 protocol exactly as the Rust connector `plugins/certn` does (see the module
docs of `sim/src/certn.rs`): invite through `POST {api-base}/api/v1/hr/applications/invite/`,
`Certn-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` on callbacks, the same
status labels. Every function takes a `host` (see `wasm_host.WasmHost` and the tests' `FakeHost`),
so the logic runs unchanged natively under `unittest` and inside the component.

Errors are raised as `componentize_py_types.Err(ConnectorError_...)`, which componentize-py turns
into the export's `result` error.
"""

import json

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.crypto import Encoding
from wit_world.imports.log import Level
from wit_world.imports.outbound_http import (
    HttpError_Connection,
    HttpError_Denied,
    HttpError_Invalid,
    HttpError_Timeout,
    OutgoingRequest,
)

from text import first_non_empty, header, query_param, redact, truncate, urlencode

CONNECTOR_ID = "certn-py"
VERSION = "0.1.0"
VENDOR = "Certn"

KEY_API_BASE = "api-base"
KEY_API_KEY = "api-key"
KEY_WEBHOOK_SECRET = "webhook-secret"

DEFAULT_API_BASE = "https://api.certn.co"
INVITE_PATH = "/api/v1/hr/applications/invite/"
APPLICATIONS_PATH = "/api/v1/hr/applications/"
TIMEOUT_MS = 10_000
# How far (seconds, either way) a callback's signed timestamp may be from our clock.
TOLERANCE_SECS = 300
# Signatures looked at in one header: a rotation needs two or three; a hostile header gets no more.
MAX_SIGNATURES = 8
MAX_DETAIL = 300

LABEL_PENDING = "CERTN - Pending"
LABEL_NO_EMAIL = "CERTN - ERROR (No Email)"
STATUS_LABELS = [
    LABEL_PENDING,
    "CERTN - Analyzing",
    "CERTN - Partial",
    "CERTN - Complete",
    LABEL_NO_EMAIL,
    "CERTN - Cancelled",
]
# Certn status -> (state, label).
STATUSES = {
    "PENDING": (types.ScreeningState.PENDING, LABEL_PENDING),
    "ANALYZING": (types.ScreeningState.ANALYZING, "CERTN - Analyzing"),
    "PARTIAL": (types.ScreeningState.PARTIAL, "CERTN - Partial"),
    "COMPLETE": (types.ScreeningState.COMPLETE, "CERTN - Complete"),
    "CANCELLED": (types.ScreeningState.CANCELLED, "CERTN - Cancelled"),
}

# Measured (see plugins/examples/README.md): componentize-py components have 14 core instances,
# and linear memory is 12.4 MiB after a call (the runtime alone is ~12.5 MiB); 32 leaves room for
# large callback bodies and vendor answers.
MEMORY_MIB = 32
INSTANCES = 14


def config_error(message):
    return Err(types.ConnectorError_Config(message))


def transient(message):
    return Err(types.ConnectorError_Transient(message))


def rejected(message):
    return Err(types.ConnectorError_Rejected(message))


def manifest():
    """The connector's self-description (calls no import)."""
    return types.Manifest(
        id=CONNECTOR_ID,
        version=VERSION,
        display_name="Certn background checks (Python)",
        config_fields=[
            types.ConfigField(KEY_API_BASE, "Certn API base URL (default https://api.certn.co)", False, False),
            types.ConfigField(KEY_API_KEY, "Certn team API key", True, True),
            types.ConfigField(
                KEY_WEBHOOK_SECRET,
                "Certn webhook secret, used to verify Certn-Signature on callbacks",
                True,
                True,
            ),
        ],
        outbound_hosts=["api.certn.co"],
        status_labels=list(STATUS_LABELS),
        default_trigger_stage=None,
        verdict_labels=[],
        limits=types.ResourceNeeds(memory_mib=MEMORY_MIB, instances=INSTANCES),
    )


def list_packages(host):
    packages = host.packages()
    if not packages:
        raise config_error("no Certn packages are configured")
    return packages


def status(state, label, report_url=None, verdict=None):
    return types.Status(state=state, label=label, report_url=report_url, score=None, verdict=verdict, note=None)


def pending():
    return status(types.ScreeningState.PENDING, LABEL_PENDING)


# --- Packages ---------------------------------------------------------------------------------


def same_name(a, b):
    """Package names and tags compare trimmed and case-insensitively; blank matches nothing."""
    a, b = a.strip(), b.strip()
    return a != "" and a.lower() == b.lower()


def choose_package(host, request):
    """The explicit package (must exist), else the first non-default package a tag names, else the
    default."""
    packages = host.packages()
    if request.package is not None:
        for p in packages:
            if same_name(p.name, request.package):
                return p
        raise rejected("unknown package %s" % json.dumps(request.package.strip()))
    tags = list(request.opportunity_tags) + list(request.posting_tags)
    matched = [p for p in packages if not p.is_default and any(same_name(p.name, t) for t in tags)]
    if matched:
        chosen = matched[0]
        host.log(
            Level.INFO,
            "package chosen by tag",
            [("package", chosen.name), ("also-matched", ", ".join(p.name for p in matched[1:]))],
        )
        return chosen
    for p in packages:
        if p.is_default:
            return p
    raise config_error("no default Certn package is configured")


def request_flags(checks):
    """`criminal_record_check, request_identity_verification` -> Certn's `request_*` flags."""
    flags = []
    for check in checks.split(","):
        check = check.strip().lower()
        if check:
            if check.startswith("request_"):
                check = check[len("request_"):]
            flags.append("request_" + check)
    return flags


# --- Certn API ----------------------------------------------------------------------------------


def api_base(host):
    base = (host.config_get(KEY_API_BASE) or "").strip() or DEFAULT_API_BASE
    return base.rstrip("/")


def split_name(full):
    """First word is the first name, the rest the last name."""
    parts = full.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def invite_body(email, phone, package, name, flags, reference):
    first, last = split_name(name)
    body = {
        "email": email,
        "phone_number": phone,
        "package": package,
        "information": {"first_name": first, "last_name": last},
    }
    for flag in flags:
        body[flag] = True
    body["reference"] = reference
    return json.dumps(body, separators=(",", ":")).encode()


def scalar_text(value):
    """A JSON string (non-blank, trimmed) or number as text; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)):
        return str(value)
    return None


class Application:
    """The fields of a Certn application we use."""

    def __init__(self, id, status, report_url=None, result=None):
        self.id = id
        self.status = status
        self.report_url = report_url
        self.result = result


def application_from(value):
    """An `Application` from parsed JSON, or raises ValueError."""
    if not isinstance(value, dict):
        raise ValueError("application is not an object")
    app_id = scalar_text(value.get("id"))
    if app_id is None:
        raise ValueError("application id is not a string or number")
    app_status = value.get("status")
    if not isinstance(app_status, str):
        raise ValueError("application status is not a string")
    report_url = value.get("report_url")
    if report_url is not None and not isinstance(report_url, str):
        raise ValueError("report_url is not a string")
    report_url = (report_url or "").strip() or None
    return Application(app_id, app_status, report_url, scalar_text(value.get("result")))


def status_of(app):
    """The status to show for an application, or None for a Certn status we do not know."""
    mapped = STATUSES.get(app.status.strip().upper())
    if mapped is None:
        return None
    state, label = mapped
    return status(state, label, report_url=app.report_url, verdict=app.result)


def flatten(value):
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(flatten(v) for v in value)
    return json.dumps(value)


def error_detail(body, secret):
    """A short detail from a DRF error body (`{"detail": ...}` or field errors), scrubbed."""
    try:
        value = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
    else:
        if isinstance(value, dict):
            if isinstance(value.get("detail"), str):
                text = value["detail"]
            else:
                text = "; ".join("%s: %s" % (k, flatten(v)) for k, v in value.items())
        else:
            text = flatten(value)
    text = redact(text, secret) or "no detail"
    return truncate(text, MAX_DETAIL)


class HttpFailed(Exception):
    """A request that got no usable answer: the contract error to return, and whether it may still
    have taken effect at the vendor (then the intent is kept and a retry looks up first)."""

    def __init__(self, error, may_have_placed):
        super().__init__(error)
        self.error = error
        self.may_have_placed = may_have_placed


def send(host, method, url, api_key, body=b"", extra_headers=()):
    """Sends one request; transport failures become `HttpFailed`."""
    headers = [("authorization", "Bearer " + api_key), ("accept", "application/json")]
    headers.extend(extra_headers)
    request = OutgoingRequest(method=method, url=url, headers=headers, body=body, timeout_ms=TIMEOUT_MS)
    try:
        return host.send(request)
    except Err as e:
        failure = e.value
        if isinstance(failure, HttpError_Timeout):
            raise HttpFailed(transient("Certn did not answer in time"), True)
        if isinstance(failure, HttpError_Connection):
            raise HttpFailed(transient("could not reach Certn: " + failure.value), True)
        if isinstance(failure, HttpError_Denied):
            raise HttpFailed(config_error("outbound request to Certn denied: " + failure.value), False)
        if isinstance(failure, HttpError_Invalid):
            raise HttpFailed(config_error("invalid request to Certn: " + failure.value), False)
        raise


def may_have_taken_effect(code):
    """A 4xx or 503 proves the vendor did nothing; other failures might have placed the order."""
    return not (400 <= code <= 499 or code == 503)


def invite_error(code, body, secret):
    if code in (401, 403):
        return config_error("Certn rejected the API key")
    if code in (408, 429):
        return transient("Certn answered %d (rate limited or timed out)" % code)
    if 500 <= code <= 599:
        return transient("Certn answered %d" % code)
    return rejected("Certn refused the invite (%d): %s" % (code, error_detail(body, secret)))


def lookup(host, base, api_key, key):
    """The application an earlier attempt created with our reference, or None."""
    url = "%s%s?reference=%s" % (base, APPLICATIONS_PATH, urlencode(key))
    response = send(host, "GET", url, api_key)
    if not 200 <= response.status <= 299:
        if response.status in (401, 403):
            raise config_error("Certn rejected the credentials (%d)" % response.status)
        if response.status in (408, 429) or 500 <= response.status <= 599:
            raise transient("Certn answered %d" % response.status)
        raise rejected("Certn answered %d" % response.status)
    try:
        results = json.loads(response.body).get("results")
        if not isinstance(results, list):
            raise ValueError("no `results` list")
    except (ValueError, AttributeError) as e:
        raise rejected("Certn answered %d with an unexpected body: %s" % (response.status, e))
    for value in results:
        # A result carrying a reference must carry ours: never mistake another application for it.
        if isinstance(value, dict) and value.get("reference") not in (None, key):
            continue
        try:
            return application_from(value)
        except ValueError:
            continue
    return None


def invite(host, base, api_key, key, body):
    url = base + INVITE_PATH
    response = send(
        host,
        "POST",
        url,
        api_key,
        body,
        [("content-type", "application/json"), ("idempotency-key", key)],
    )
    if 200 <= response.status <= 299:
        try:
            app_id = scalar_text(json.loads(response.body).get("id"))
        except (ValueError, AttributeError):
            app_id = None
        if app_id is None:
            # The invite may have been sent: never retry blindly (the intent stays for a lookup).
            raise HttpFailed(rejected("Certn answered %d without an application id" % response.status), True)
        return Application(app_id, "PENDING")
    raise HttpFailed(
        invite_error(response.status, response.body, api_key), may_have_taken_effect(response.status)
    )


# --- The exports --------------------------------------------------------------------------------


def start_screening(host, request):
    """Invites the candidate, at most once per idempotency key (the contract's pattern)."""
    email = first_non_empty(request.candidate.emails)
    if email is None:
        host.log(Level.WARN, "candidate has no email; not inviting", [("opportunity-id", request.opportunity_id)])
        return types.Started(order_ref=None, status=status(types.ScreeningState.ERROR, LABEL_NO_EMAIL))

    key = request.idempotency_key
    order_key, intent_key = "order:" + key, "intent:" + key
    # (1) Done already. Checked before package selection so a later config change cannot turn a
    # retry into an error.
    recorded = host.state_get(order_key)
    if recorded is not None:
        host.log(Level.INFO, "order already exists for idempotency key", [("order-ref", recorded)])
        return types.Started(order_ref=recorded, status=pending())

    chosen = choose_package(host, request)
    api_key = (host.secret(KEY_API_KEY) or "").strip()
    if not api_key:
        raise config_error("missing secret `api-key`")
    base = api_base(host)
    checks = next((v for k, v in chosen.params if k.strip().lower() == "checks"), "")
    flags = request_flags(checks)
    if not flags:
        host.log(Level.WARN, "package has no checks parameter; inviting without request_* flags", [("package", chosen.name)])

    # (3) An earlier attempt recorded its intent and may have reached Certn: look it up first.
    if host.state_get(intent_key) is not None:
        host.log(Level.INFO, "an earlier attempt may have reached the vendor; looking the order up", [])
        try:
            found = lookup(host, base, api_key, key)
        except HttpFailed as f:
            raise f.error
        if found is not None:
            host.state_set_for_screening(key, order_key, found.id)
            host.state_delete(intent_key)
            host.log(
                Level.INFO,
                "Certn application found by reference; not inviting again",
                [("order-ref", found.id), ("package", chosen.name)],
            )
            return types.Started(order_ref=found.id, status=status_of(found) or pending())
        host.log(Level.INFO, "no order found at the vendor; inviting", [])
    else:
        # (2) The intent, durable before the vendor call.
        host.state_set_for_screening(key, intent_key, str(host.now_unix()))

    body = invite_body(email, first_non_empty(request.candidate.phones), chosen.name, request.candidate.name, flags, key)
    try:
        app = invite(host, base, api_key, key, body)
    except HttpFailed as f:
        if not f.may_have_placed:
            host.state_delete(intent_key)
        raise f.error
    # (4) The order, once Certn answered; then the intent is no longer needed.
    host.state_set_for_screening(key, order_key, app.id)
    host.state_delete(intent_key)
    host.log(Level.INFO, "Certn invite sent", [("order-ref", app.id), ("package", chosen.name)])
    return types.Started(order_ref=app.id, status=pending())


def json_response(code, body):
    return types.HttpResponse(status=code, headers=[("content-type", "application/json")], body=body.encode())


def reply(response, updates=None):
    return types.CallbackResult(response=response, updates=updates or [])


def handle_callback(host, request):
    """Certn's endpoint verification (`GET ?challenge=`) and signed application webhooks (POST)."""
    method = request.method.upper()
    if method == "GET":
        challenge = query_param(request.query, "challenge")
        if challenge is None:
            return reply(json_response(400, '{"error":"missing challenge"}'))
        return reply(types.HttpResponse(status=200, headers=[("content-type", "text/plain")], body=challenge.encode()))
    if method != "POST":
        return reply(json_response(405, '{"error":"method not allowed"}'))

    secret = host.secret(KEY_WEBHOOK_SECRET) or ""
    if not secret.strip():
        raise config_error("missing secret `webhook-secret`")
    problem = verify_signature(host, secret.encode(), header(request.headers, "certn-signature"), request.body)
    if problem is not None:
        host.log(Level.WARN, "rejected Certn callback", [("reason", problem)])
        return reply(json_response(401, '{"error":"invalid signature"}'))

    try:
        app = application_from(json.loads(request.body))
    except ValueError as e:
        host.log(Level.WARN, "malformed Certn callback body", [("error", truncate(str(e), 200))])
        return reply(json_response(400, '{"error":"malformed body"}'))

    update = status_of(app)
    if update is None:
        # 200 anyway: an error would only make Certn retry something we will never understand.
        host.log(
            Level.WARN,
            "ignoring Certn callback with unknown status",
            [("order-ref", app.id), ("status", truncate(app.status, 64))],
        )
        return reply(json_response(200, '{"received":true}'))
    return reply(json_response(200, '{"received":true}'), [types.StatusUpdate(order_ref=app.id, status=update)])


def verify_signature(host, secret, value, body):
    """Checks `t=<unix>,v1=<hex>[,v1=...]` over `<t>.<body>` with the host's `crypto` import.
    Returns None when valid, else a reason for our own log."""
    if value is None:
        return "missing signature header"
    timestamp, signatures = None, []
    for part in value.split(","):
        name, sep, text = part.partition("=")
        if not sep:
            continue
        name, text = name.strip(), text.strip()
        if name == "t":
            timestamp = text
        elif name == "v1" and text:
            signatures.append(text)
    if not timestamp or not signatures:
        return "malformed signature header"
    if len(timestamp) > 12 or not timestamp.isdigit() or not timestamp.isascii():
        return "malformed signature header"
    if abs(host.now_unix() - int(timestamp)) > TOLERANCE_SECS:
        return "signature timestamp outside tolerance"
    message = timestamp.encode() + b"." + body
    for signature in signatures[:MAX_SIGNATURES]:
        if host.verify_hmac_sha256(secret, message, signature, Encoding.HEX):
            return None
    return "signature mismatch"
