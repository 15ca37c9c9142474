"""modelserve's test kit: test a Service without a socket or a database.

    from modelserve.testing import ServiceClient, assert_batch_invariant, sample_inputs

    def test_my_model():
        with ServiceClient(MyIris) as client:
            assert client.predict({...}).status == 200
            assert_batch_invariant(client, sample_inputs(client.spec, 8))
            assert client.stream({...}).chunks  # a Service with predict_stream

`ServiceClient` runs the service's `setup` once and drives the server's own predict pipeline
in-process, so statuses, error bodies and headers are what the server answers. The pytest
plugin (`pytest_plugins = ["modelserve.testing.plugin"]`) adds the `modelserve_client` fixture
factory. `modelserve check my_model.py` runs the same checks from the command line.
"""

from modelserve.testing.checks import (
    CheckReport,
    assert_batch_invariant,
    assert_refuses_invalid_inputs,
    check_service,
)
from modelserve.testing.client import PredictResponse, ServiceClient, StreamResponse
from modelserve.testing.inputs import InvalidInput, input_strategy, invalid_inputs, sample_inputs

__all__ = [
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
]
