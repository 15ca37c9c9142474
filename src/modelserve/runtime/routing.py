"""`ModelTable`: which loaded version answers a request, and what is mirrored.

The table maps model names to their `ServedModel` (versions and traffic policy). Everything
here is a lookup: no I/O, no locks, nothing that starts or stops a version
(`runtime/manager.py` does that and is the only writer). A request resolves its version with
one dict read and one `Router.pick`.
"""

from __future__ import annotations

from collections.abc import Iterator

from modelserve.errors import ServiceNotFoundError
from modelserve.runtime.shadow import DEFAULT_SHADOW_BUFFER, ShadowRecord, ShadowRecorder
from modelserve.runtime.traffic import TrafficPolicy
from modelserve.runtime.versions import DeployedService, ServedModel
from modelserve.types import ServiceStatus


class ModelTable:
    """Every model name of one server process, its versions and its traffic."""

    def __init__(self, *, shadow_buffer: int = DEFAULT_SHADOW_BUFFER) -> None:
        self._models: dict[str, ServedModel] = {}
        self._shadow_buffer = shadow_buffer

    def entry(self, name: str) -> ServedModel:
        """The named model's entry, made empty when missing (for the lifecycle's writers)."""
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = ServedModel(
                name, shadows=ShadowRecorder(self._shadow_buffer)
            )
        return model

    def find(self, name: str) -> ServedModel | None:
        """The named model's entry, or None."""
        return self._models.get(name)

    def get(self, name: str) -> DeployedService:
        """The primary version of the named model, or ServiceNotFoundError."""
        model = self._models.get(name)
        primary = None if model is None else model.primary
        if primary is None:
            raise ServiceNotFoundError(f"no model named {name!r}")
        return primary

    def model(self, name: str) -> ServedModel:
        """Every version of the named model, or ServiceNotFoundError."""
        model = self._models.get(name)
        if model is None or not model.versions:
            raise ServiceNotFoundError(f"no model named {name!r}")
        return model

    def resolve(
        self, name: str, version: str | None = None, sticky_key: str | None = None
    ) -> DeployedService:
        """The version that answers a request: pinned, or chosen by the traffic policy."""
        model = self._models.get(name)
        if model is None or model.router is None:
            raise ServiceNotFoundError(f"no model named {name!r}")
        chosen = version if version is not None else model.router.pick(sticky_key)
        deployed = model.versions.get(chosen)
        if deployed is None:
            raise ServiceNotFoundError(f"model {name!r} has no loaded version {chosen!r}")
        return deployed

    def mirror(self, name: str) -> DeployedService | None:
        """The shadow version to copy this request to, if the policy samples it."""
        model = self._models.get(name)
        if model is None or model.router is None:
            return None
        version = model.router.mirror()
        return None if version is None else model.versions.get(version)

    def record_shadow(self, name: str, record: ShadowRecord) -> None:
        """Keep one shadow comparison for the model."""
        model = self._models.get(name)
        if model is not None:
            model.shadows.add(record)

    def shadow_records(self, name: str, limit: int = 100) -> list[ShadowRecord]:
        """The newest shadow comparisons of a model (per process)."""
        return self.model(name).shadows.latest(limit)

    def policy(self, name: str) -> TrafficPolicy | None:
        """The current traffic policy of a model."""
        model = self._models.get(name)
        return None if model is None or model.router is None else model.router.policy

    def versions(self, name: str) -> dict[str, DeployedService]:
        """Loaded versions of a model (a copy)."""
        model = self._models.get(name)
        return {} if model is None else dict(model.versions)

    def models(self) -> list[ServedModel]:
        """Every served model name that has a policy."""
        return [m for m in self._models.values() if m.router is not None]

    def __iter__(self) -> Iterator[DeployedService]:
        """Every loaded version of every model."""
        return iter([d for m in self._models.values() for d in m.versions.values()])

    def __len__(self) -> int:
        return sum(len(m.versions) for m in self._models.values())

    def is_ready(self, *, any_ready: bool = False) -> bool:
        """Every model's primary version ready (default), or at least one (`any_ready`)."""
        states = [
            m.primary is not None and m.primary.status is ServiceStatus.READY for m in self.models()
        ]
        if not states:
            return True
        return any(states) if any_ready else all(states)
