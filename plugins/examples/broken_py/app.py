"""A deliberately broken Python connector, for the host's tests: its manifest is valid, but every
call hits the mistake authors make most with componentize-py — a module imported lazily, inside a
call, is not in the component — so the call dies with a Python traceback (ModuleNotFoundError).
The suite asserts that this traceback reaches the event's recorded error.
"""

from wit_world import exports
from wit_world.imports import types

LABELS = ["BROKEN - Pending"]


def _lazy_import():
    # The mistake: imported here, not at top level, so componentize-py never bundled it.
    import switchyard_missing_module  # noqa: F401


class Screening(exports.Screening):
    def manifest(self):
        return types.Manifest(
            id="broken-py",
            version="0.1.0",
            display_name="Broken (Python)",
            config_fields=[],
            outbound_hosts=[],
            status_labels=LABELS,
            default_trigger_stage=None,
            verdict_labels=[],
            limits=types.ResourceNeeds(memory_mib=32, instances=14),
        )

    def list_packages(self):
        _lazy_import()
        return []

    def start_screening(self, request):
        _lazy_import()
        raise AssertionError("unreachable")

    def handle_callback(self, request):
        _lazy_import()
        raise AssertionError("unreachable")
