"""What a server process needs to build its app: the serve plan, and the app factory.

`modelserve serve` builds the app in its own process when it runs one server. With `--workers N`
or `--reload`, uvicorn starts fresh processes that import an app by name, so the parent writes a
`ServePlan` (targets + the flags the user gave) into an environment variable and each process calls
`build_app`, which reads it back. Only the flags travel: every process reads the `MODELSERVE_*`
environment itself, so secrets never pass through the plan and nothing is pickled.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelserve.config import Settings
from modelserve.console import install_console
from modelserve.errors import ConfigError
from modelserve.http.app import ModelserveApp
from modelserve.http.assembly import create_app
from modelserve.observability.stack import configure_process
from modelserve.service.loader import load_target
from modelserve.service.spec import ServiceSpec

# Outside the settings' field names on purpose: pydantic-settings must never read it as a setting.
PLAN_ENV_VAR = "_MODELSERVE_SERVE_PLAN"

# Overrides are `{"server": {"port": 9000}, "device": "cuda"}`: nested like Settings itself.
Overrides = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ServePlan:
    """Targets to serve and the settings given as flags; crosses processes as JSON."""

    targets: tuple[str, ...]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # Also serve what the registry's served alias points at (`serve --registry`).
    registry: bool = False

    def to_json(self) -> str:
        """Encode for an environment variable."""
        return json.dumps(
            {
                "targets": list(self.targets),
                "overrides": dict(self.overrides),
                "registry": self.registry,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ServePlan:
        """Decode what `to_json` wrote."""
        data = json.loads(text)
        return cls(
            targets=tuple(data["targets"]),
            overrides=data["overrides"],
            registry=bool(data.get("registry", False)),
        )

    def settings(self) -> Settings:
        """Build Settings: flags win over `MODELSERVE_*` variables, which win over defaults.

        Raises ConfigError with one readable line when a value is invalid.
        """
        try:
            # Init values are deep-merged over the environment by pydantic-settings, so
            # `--port` does not discard MODELSERVE_SERVER__HOST.
            return Settings(**self.overrides)
        except ValidationError as exc:
            raise ConfigError(f"invalid settings: {_first_error(exc)}") from exc

    def specs(self) -> list[ServiceSpec]:
        """Import every target and describe its services (ServiceLoadError / ConfigError)."""
        return load_specs(self.targets)


def load_specs(targets: Sequence[str]) -> list[ServiceSpec]:
    """Load every target; two services with the same name are a ConfigError."""
    _allow_local_modules()
    specs: list[ServiceSpec] = []
    seen: dict[str, str] = {}
    for target in targets:
        for spec in load_target(target):
            if spec.name in seen:
                raise ConfigError(
                    f"two services are named {spec.name!r} (in {seen[spec.name]} and {target});"
                    " give each a unique `name`"
                )
            seen[spec.name] = target
            specs.append(spec)
    return specs


def absolute_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """File targets as absolute paths, so worker processes find them whatever their cwd."""
    resolved: list[str] = []
    for target in targets:
        location, sep, attr = target.partition(":")
        if location.endswith(".py") or "/" in location:
            location = str(Path(location).resolve())
        resolved.append(location + sep + attr)
    return tuple(resolved)


def publish(plan: ServePlan) -> None:
    """Make the plan visible to the worker processes uvicorn is about to start."""
    os.environ[PLAN_ENV_VAR] = plan.to_json()


def build_app() -> ModelserveApp:
    """App factory for uvicorn worker and reload processes (`factory=True`)."""
    text = os.environ.get(PLAN_ENV_VAR)
    if text is None:
        raise ConfigError(
            f"{PLAN_ENV_VAR} is not set: start servers with `modelserve serve`, which sets it"
        )
    plan = ServePlan.from_json(text)
    return server_app(plan.settings(), plan.specs(), registry=plan.registry)


def server_app(
    settings: Settings, specs: Sequence[ServiceSpec], *, registry: bool
) -> ModelserveApp:
    """The app of one server process: the specs, auth, the registry API, (with `registry`)
    whatever the registry's served alias points at, and the admin console when enabled."""
    # Logs, redaction, tracing and Sentry are per process: every worker sets them up itself.
    configure_process(settings)
    app = create_app(settings, services=specs, serve_registry=registry)
    if settings.console.enabled:
        # The console is an edge next to http/ (http never imports it): it is added here,
        # where a server process's app is assembled.
        install_console(app, settings)
    return app


def _allow_local_modules() -> None:
    # `pkg.module` targets are looked up from the current folder, as `python -m` and uvicorn do;
    # the `modelserve` console script does not put it on sys.path by itself.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
