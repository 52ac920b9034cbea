"""A scripted host for native unit tests: the same methods as `wasm_host.WasmHost`."""

import hashlib
import hmac

from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.crypto import Encoding
from wit_world.imports.outbound_http import HttpError_Connection

NOW = 1_700_000_000


class FakeHost:
    def __init__(self, settings=None, secrets=None, packages=None, state=None, now=NOW):
        self.settings = dict(settings or {})
        self.secrets = dict(secrets or {})
        self._packages = list(packages or [])
        self.state = dict(state or {})
        self.screenings = {}
        self.now = now
        self.logs = []
        self.sent = []
        # (method, url prefix) -> list of responses (HttpResponse) or errors (Err), used in order.
        self._script = []

    def respond(self, method, url_prefix, status, body=b"", headers=None):
        answer = types.HttpResponse(status=status, headers=headers or [], body=body if isinstance(body, bytes) else body.encode())
        self._script.append((method, url_prefix, answer))

    def fail(self, method, url_prefix, error):
        self._script.append((method, url_prefix, Err(error)))

    def count(self, method, url_prefix):
        return sum(1 for r in self.sent if r.method == method and r.url.startswith(url_prefix))

    def send(self, request):
        self.sent.append(request)
        for i, (method, prefix, answer) in enumerate(self._script):
            if method == request.method and request.url.startswith(prefix):
                del self._script[i]
                if isinstance(answer, Err):
                    raise answer
                return answer
        raise Err(HttpError_Connection("FakeHost: no scripted response for %s %s" % (request.method, request.url)))

    def state_get(self, key):
        return self.state.get(key)

    def state_set(self, key, value):
        self.state[key] = value
        self.screenings.pop(key, None)

    def state_set_for_screening(self, screening, key, value):
        self.state[key] = value
        self.screenings[key] = screening

    def record_order(self, screening):
        """What the host does when it records the screening's order: its entries go."""
        for key in [k for k, s in self.screenings.items() if s == screening]:
            self.state.pop(key, None)
            del self.screenings[key]

    def state_delete(self, key):
        self.state.pop(key, None)

    def config_get(self, key):
        return self.settings.get(key)

    def secret(self, key):
        return self.secrets.get(key)

    def packages(self):
        return list(self._packages)

    def callback_url(self):
        return "https://switchyard.example/hooks/test/vendor"

    def log(self, level, message, fields):
        self.logs.append((level, message, list(fields)))

    def logged(self, text):
        return any(text in message or any(text in k or text in v for k, v in fields) for _, message, fields in self.logs)

    def verify_hmac_sha256(self, key, message, signature, encoding):
        assert encoding == Encoding.HEX
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.strip().lower())

    def now_unix(self):
        return self.now


def certn_signature(secret, timestamp, body):
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (timestamp, mac)
