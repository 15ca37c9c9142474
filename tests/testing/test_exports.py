"""`modelserve.testing` is public API: exactly what its `__all__` lists, each documented."""

import modelserve.testing

EXPECTED = {
    "CheckReport",
    "InvalidInput",
    "PredictResponse",
    "ServiceClient",
    "StreamResponse",
    "assert_batch_invariant",
    "assert_refuses_invalid_inputs",
    "check_service",
    "input_strategy",
    "invalid_inputs",
    "sample_inputs",
}


def test_the_test_kit_exports_are_curated_and_documented() -> None:
    assert set(modelserve.testing.__all__) == EXPECTED
    for name in modelserve.testing.__all__:
        assert getattr(modelserve.testing, name).__doc__, f"{name} has no docstring"


def test_importing_the_kit_does_not_import_hypothesis() -> None:
    import subprocess
    import sys

    code = "import sys, modelserve.testing; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
