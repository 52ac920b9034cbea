"""Native unit tests of the Certn connector's logic (run by `scripts/toolchains.sh test`, with the
componentize-py bindings on PYTHONPATH)."""

import json
import unittest

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.outbound_http import HttpError_Denied, HttpError_Timeout

import certn
import text
from tests.fake_host import NOW, FakeHost, certn_signature

BASE = "http://127.0.0.1:9100"
INVITE = BASE + "/api/v1/hr/applications/invite/"
LOOKUP = BASE + "/api/v1/hr/applications/?reference="
KEY = "lever:tok-1"
SECRET = "whsec_test"


def host(**kw):
    return FakeHost(
        settings={"api-base": BASE + "/"},
        secrets={"api-key": "sk_live_1", "webhook-secret": SECRET},
        packages=[
            types.Package("Basic", True, [("checks", "criminal_record_check")]),
            types.Package("Premium", False, []),
        ],
        **kw,
    )


def request(emails=("ada@example.com",), key=KEY, package=None, posting_tags=()):
    return types.ScreeningRequest(
        idempotency_key=key,
        candidate=types.Candidate("Ada Lovelace", list(emails), []),
        opportunity_id="opp-1",
        opportunity_tags=[],
        posting_id=None,
        posting_tags=list(posting_tags),
        stage="Background Check",
        package=package,
    )


def app(app_id, status):
    return json.dumps({"id": app_id, "status": status, "reference": KEY, "report_url": None, "result": None})


def error_of(call):
    try:
        call()
    except Err as e:
        return e.value
    raise AssertionError("no error raised")


class StartScreening(unittest.TestCase):
    def test_invites_once_with_reference_and_records_the_order(self):
        h = host()
        h.respond("POST", INVITE, 201, app("app-1", "PENDING"))
        started = certn.start_screening(h, request(emails=["", "ada@example.com"]))
        self.assertEqual(started.order_ref, "app-1")
        self.assertEqual(started.status.label, "CERTN - Pending")
        self.assertEqual(len(h.sent), 1, "no lookup on a first attempt")
        body = json.loads(h.sent[0].body)
        self.assertEqual(body["reference"], KEY)
        self.assertEqual(body["email"], "ada@example.com")
        self.assertEqual(body["request_criminal_record_check"], True)
        self.assertEqual(text.header(h.sent[0].headers, "idempotency-key"), KEY)
        self.assertEqual(text.header(h.sent[0].headers, "authorization"), "Bearer sk_live_1")
        self.assertEqual(h.state, {"order:" + KEY: "app-1"})
        # The host retries: nothing is sent again.
        self.assertEqual(certn.start_screening(h, request()).order_ref, "app-1")
        self.assertEqual(len(h.sent), 1)

    def test_retry_after_a_timed_out_invite_looks_up_and_does_not_invite_again(self):
        h = host()
        h.fail("POST", INVITE, HttpError_Timeout())
        self.assertIsInstance(error_of(lambda: certn.start_screening(h, request())), types.ConnectorError_Transient)
        self.assertIn("intent:" + KEY, h.state)
        h.respond("GET", LOOKUP, 200, json.dumps({"count": 2, "results": [
            {"id": "other", "status": "PENDING", "reference": "lever:x"},
            {"id": "app-1", "status": "ANALYZING", "reference": KEY},
        ]}))
        started = certn.start_screening(h, request())
        self.assertEqual((started.order_ref, started.status.label), ("app-1", "CERTN - Analyzing"))
        self.assertEqual(h.count("POST", INVITE), 1, "never invited twice")
        self.assertEqual(h.sent[1].url, LOOKUP + "lever%3Atok-1")
        self.assertEqual(h.state, {"order:" + KEY: "app-1"})

    def test_intent_without_an_application_invites_once(self):
        h = host(state={"intent:" + KEY: "1699999000"})
        h.respond("GET", LOOKUP, 200, '{"count":0,"results":[]}')
        h.respond("POST", INVITE, 201, app("app-2", "PENDING"))
        self.assertEqual(certn.start_screening(h, request()).order_ref, "app-2")
        self.assertEqual([r.method for r in h.sent], ["GET", "POST"])

    def test_a_failing_lookup_does_not_invite(self):
        h = host(state={"intent:" + KEY: "1699999000"})
        h.respond("GET", LOOKUP, 503)
        self.assertEqual(error_of(lambda: certn.start_screening(h, request())), types.ConnectorError_Transient("Certn answered 503"))
        self.assertEqual(h.count("POST", INVITE), 0)

    def test_a_refusal_drops_the_intent_so_the_retry_invites_directly(self):
        h = host()
        h.respond("POST", INVITE, 503)
        error_of(lambda: certn.start_screening(h, request()))
        self.assertEqual(h.state, {})
        h.respond("POST", INVITE, 201, app("app-1", "PENDING"))
        certn.start_screening(h, request())
        self.assertEqual(h.count("GET", LOOKUP), 0)

    def test_no_email_is_an_error_status_without_a_call(self):
        h = host()
        started = certn.start_screening(h, request(emails=[" "]))
        self.assertIsNone(started.order_ref)
        self.assertEqual((started.status.state, started.status.label), (types.ScreeningState.ERROR, "CERTN - ERROR (No Email)"))
        self.assertEqual((h.sent, h.state), ([], {}))

    def test_bad_key_is_a_config_error_and_never_logged(self):
        h = host()
        h.respond("POST", INVITE, 401, '{"detail":"Invalid token."}')
        self.assertEqual(error_of(lambda: certn.start_screening(h, request())), types.ConnectorError_Config("Certn rejected the API key"))
        self.assertFalse(h.logged("sk_live_1"))
        bare = FakeHost(packages=[types.Package("Basic", True, [])])
        self.assertEqual(error_of(lambda: certn.start_screening(bare, request())), types.ConnectorError_Config("missing secret `api-key`"))

    def test_vendor_detail_is_scrubbed_and_bounded(self):
        h = host()
        h.respond("POST", INVITE, 400, json.dumps({"email": ["bad sk_live_1 " + "x" * 500]}))
        error = error_of(lambda: certn.start_screening(h, request()))
        self.assertIsInstance(error, types.ConnectorError_Rejected)
        self.assertNotIn("sk_live_1", error.value)
        self.assertIn("[redacted]", error.value)
        self.assertLess(len(error.value), 400)

    def test_a_denied_host_is_a_config_error(self):
        h = host()
        h.fail("POST", INVITE, HttpError_Denied("127.0.0.1"))
        self.assertIsInstance(error_of(lambda: certn.start_screening(h, request())), types.ConnectorError_Config)
        self.assertEqual(h.state, {}, "nothing was sent: the retry need not look up")

    def test_tag_and_explicit_package_choice(self):
        h = host()
        h.respond("POST", INVITE, 201, app("app-1", "PENDING"))
        certn.start_screening(h, request(posting_tags=[" PREMIUM "]))
        self.assertEqual(json.loads(h.sent[0].body)["package"], "Premium")
        self.assertEqual(
            error_of(lambda: certn.start_screening(h, request(key="gem:scr_1", package="Gold"))),
            types.ConnectorError_Rejected('unknown package "Gold"'),
        )


def webhook(body, signature=None, method="POST", query=""):
    headers = [("certn-signature", signature)] if signature else []
    return types.HttpRequest(method=method, path="/", query=query, headers=headers, body=body.encode())


class HandleCallback(unittest.TestCase):
    def test_signed_webhook_becomes_an_update(self):
        body = '{"id":"app-1","status":"COMPLETE","report_url":"https://r/app-1.pdf","result":"CLEAR"}'
        result = certn.handle_callback(host(), webhook(body, certn_signature(SECRET.encode(), NOW - 10, body.encode())))
        self.assertEqual(result.response.status, 200)
        (update,) = result.updates
        self.assertEqual(update.order_ref, "app-1")
        self.assertEqual(update.status.label, "CERTN - Complete")
        self.assertEqual(update.status.state, types.ScreeningState.COMPLETE)
        self.assertEqual(update.status.report_url, "https://r/app-1.pdf")
        self.assertEqual(update.status.verdict, "CLEAR")

    def test_bad_or_stale_signatures_are_401_without_updates(self):
        body = '{"id":"app-1","status":"COMPLETE"}'
        stale = certn_signature(SECRET.encode(), NOW - 301, body.encode())
        wrong = certn_signature(b"other", NOW, body.encode())
        h = host()
        for sig in [None, stale, wrong, "garbage", "t=abc,v1=00"]:
            result = certn.handle_callback(h, webhook(body, sig))
            self.assertEqual((result.response.status, result.updates), (401, []), sig)
        self.assertFalse(h.logged(SECRET))

    def test_malformed_and_unknown_callbacks(self):
        def signed(body):
            return webhook(body, certn_signature(SECRET.encode(), NOW, body.encode()))

        for body in ["not json", "[]", '{"id":"x"}', '{"id":{},"status":"PENDING"}']:
            result = certn.handle_callback(host(), signed(body))
            self.assertEqual((result.response.status, result.updates), (400, []), body)
        result = certn.handle_callback(host(), signed('{"id":7,"status":"RETURNED"}'))
        self.assertEqual((result.response.status, result.updates), (200, []))

    def test_challenge_and_other_methods(self):
        result = certn.handle_callback(host(), webhook("", method="GET", query="challenge=a%20b"))
        self.assertEqual((result.response.status, result.response.body), (200, b"a b"))
        self.assertEqual(certn.handle_callback(host(), webhook("", method="GET")).response.status, 400)
        self.assertEqual(certn.handle_callback(host(), webhook("", method="PUT")).response.status, 405)


class Text(unittest.TestCase):
    def test_urlencode_matches_form_urlencoded(self):
        self.assertEqual(text.urlencode("lever:a b&c~*é"), "lever%3Aa+b%26c%7E*%C3%A9")

    def test_query_param_decodes(self):
        self.assertEqual(text.query_param("x=1&challenge=a%20b+c%2", "challenge"), "a b c%2")
        self.assertIsNone(text.query_param("challenges=1", "challenge"))


class Manifest(unittest.TestCase):
    def test_manifest_is_complete_for_0_2(self):
        m = certn.manifest()
        self.assertEqual(m.id, "certn-py")
        self.assertEqual(m.status_labels, certn.STATUS_LABELS)
        self.assertEqual(m.limits.instances, 14)
        self.assertTrue(any(f.key == "api-key" and f.secret for f in m.config_fields))


if __name__ == "__main__":
    unittest.main()
