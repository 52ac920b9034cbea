"""The real host: each method calls the matching import of the `connector` world.

`connector.py` only talks to a host object, so its tests pass a fake with the same methods.
"""

import time

from wit_world.imports import config, crypto, log, outbound_http, state


class WasmHost:
    def send(self, request):
        """`outbound-http.send`; raises `Err(HttpError_...)` when there is no response."""
        return outbound_http.send(request)

    def state_get(self, key):
        return state.get(key)

    def state_set(self, key, value):
        state.set(key, value)

    def state_set_for_screening(self, screening, key, value):
        """Kept until the host records the order of the screening `screening` (its idempotency key)."""
        state.set_for_screening(screening, key, value)

    def state_delete(self, key):
        state.delete(key)

    def config_get(self, key):
        return config.get(key)

    def secret(self, key):
        """A secret setting. Never log it or put it in an error."""
        return config.secret(key)

    def packages(self):
        return config.packages()

    def callback_url(self):
        return config.callback_url()

    def log(self, level, message, fields):
        log.log(level, message, fields)

    def verify_hmac_sha256(self, key, message, signature, encoding):
        return crypto.verify_hmac_sha256(key, message, signature, encoding)

    def now_unix(self):
        """The WASI wall clock, in whole seconds."""
        return int(time.time())
