"""The public API is exactly what `modelserve.__all__` lists, and each name is documented."""

import modelserve

EXPECTED = {
    "BatchingConfig",
    "CachePolicy",
    "ConfigError",
    "DeadlineExceededError",
    "HttpConfig",
    "InvalidInputError",
    "ItemError",
    "ItemRejectedError",
    "ModelserveError",
    "OutputMismatchError",
    "OverloadedError",
    "PredictionError",
    "ServerConfig",
    "Service",
    "ServiceDefinitionError",
    "ServiceLoadError",
    "ServiceNotFoundError",
    "ServiceSpec",
    "ServiceUnavailableError",
    "Settings",
    "__version__",
    "batching",
    "cache_policy",
    "create_app",
    "load_target",
}


def test_public_api_is_curated() -> None:
    assert set(modelserve.__all__) == EXPECTED


def test_public_names_exist_and_are_documented() -> None:
    for name in modelserve.__all__:
        member = getattr(modelserve, name)
        if name != "__version__":
            assert member.__doc__, f"{name} has no docstring"


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert modelserve.__version__ == version("modelserve")


def test_batching_stays_the_function_whatever_is_imported() -> None:
    import importlib

    for module in (
        "modelserve.batcher.engine",
        "modelserve.runtime.manager",
        "modelserve.http.app",
    ):
        importlib.import_module(module)
    from modelserve import batching
    from modelserve.service.batching import batching as function

    assert batching is function
