"""Unit tests of the connector's logic, natively, with a scripted host (see README.md)."""

import hashlib
import hmac
import json
import unittest

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.outbound_http import HttpError_Timeout

import connector
import lookup
from tests.errors import error_of
from tests.fake_host import NOW, FakeHost

BASE = "https://api.example.com"
KEY = "lever:tok-1"


def host(**kw):
    return FakeHost(
        settings={"api-base": BASE},
        secrets={"api-key": "key_1", "webhook-secret": "whsec_1"},
        packages=[types.Package("Basic", True, [])],
        **kw,
    )


def request(emails=("ada@example.com",)):
    return types.ScreeningRequest(KEY, types.Candidate("Ada Lovelace", list(emails), []), "opp-1", [], None, [], None, None)


class StartScreening(unittest.TestCase):
    def test_invites_once_and_records_the_order(self):
        h = host()
        h.respond("POST", BASE + "/invitations", 201, '{"id":"inv-1","status":"pending"}')
        self.assertEqual(connector.start_screening(h, request()).order_ref, "inv-1")
        self.assertEqual(json.loads(h.sent[0].body)["reference"], KEY)
        self.assertEqual(connector.start_screening(h, request()).order_ref, "inv-1")
        self.assertEqual(len(h.sent), 1)
        self.assertEqual(h.state, {"order:" + KEY: "inv-1"})

    def test_after_a_timeout_the_retry_looks_up_first(self):
        h = host()
        h.fail("POST", BASE + "/invitations", HttpError_Timeout())
        with self.assertRaises(Err):
            connector.start_screening(h, request())
        h.respond("GET", BASE + "/invitations?reference=lever%3Atok-1", 200, '{"invitations":[{"id":"inv-1","status":"pending","reference":"lever:tok-1"}]}')
        self.assertEqual(connector.start_screening(h, request()).order_ref, "inv-1")
        self.assertEqual(h.count("POST", BASE + "/invitations"), 1)

    def test_a_vendor_without_a_lookup_waits_for_an_operator_instead_of_inviting_twice(self):
        h = host()
        h.fail("POST", BASE + "/invitations", HttpError_Timeout())
        error_of(connector.start_screening, h, request())
        original = connector.find_earlier

        def cannot_search(*_):
            raise lookup.no_lookup(connector.VENDOR)

        connector.find_earlier = cannot_search
        try:
            error = error_of(connector.start_screening, h, request())
        finally:
            connector.find_earlier = original
        self.assertIsInstance(error, types.ConnectorError_Rejected)
        self.assertTrue(error.value.startswith(lookup.NEEDS_OPERATOR), error.value)
        self.assertEqual(h.count("POST", BASE + "/invitations"), 1)

    def test_lookups_by_a_stored_field_and_by_email_and_time_window(self):
        listed = [{"id": "a", "tag": "lever:tok-0"}, {"id": "b", "tag": KEY}]
        self.assertEqual(lookup.by_field(listed, KEY, lambda o: o.get("tag"))["id"], "b")
        orders = [
            {"id": "old", "email": "ada@example.com", "created": NOW - 3600},
            {"id": "new", "email": "ADA@example.com", "created": NOW + 5},
        ]
        pick = lambda os: lookup.by_email_since(os, "ada@example.com", NOW, lambda o: o["email"], lambda o: o["created"])
        self.assertEqual(pick(orders)["id"], "new")
        self.assertIsNone(pick(orders[:1]))
        error = error_of(pick, orders + [{"id": "again", "email": "ada@example.com", "created": NOW + 9}])
        self.assertTrue(error.value.startswith(lookup.NEEDS_OPERATOR), error.value)

    def test_no_email(self):
        started = connector.start_screening(host(), request(emails=[""]))
        self.assertEqual((started.order_ref, started.status.label), (None, "{{Name}} - ERROR (No Email)"))


class HandleCallback(unittest.TestCase):
    def signed(self, body, secret=b"whsec_1", ts=NOW):
        sig = hmac.new(secret, b"%d.%s" % (ts, body.encode()), hashlib.sha256).hexdigest()
        return types.HttpRequest("POST", "/", "", [("x-timestamp", str(ts)), ("x-signature", sig)], body.encode())

    def test_signed_callback_is_an_update(self):
        result = connector.handle_callback(host(), self.signed('{"id":"inv-1","status":"complete","report_url":"https://r/1"}'))
        self.assertEqual(result.response.status, 200)
        self.assertEqual(result.updates[0].status.label, "{{Name}} - Complete")

    def test_bad_signatures_are_refused(self):
        for req in [self.signed('{"id":"x","status":"complete"}', secret=b"other"), self.signed("{}", ts=NOW - 301)]:
            result = connector.handle_callback(host(), req)
            self.assertEqual((result.response.status, result.updates), (401, []))


if __name__ == "__main__":
    unittest.main()
