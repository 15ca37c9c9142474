"""`RegistryDeployer`: makes one server process serve what the registry says (`serve --registry`).

For every model whose served alias (`production` by default) is set, the wanted traffic is:
the aliased version as primary, plus the model's canaries and shadow. Reconciling a model
loads and warms every wanted version that is not loaded, switches the runtime's policy in one
step, then drains and retires the versions nothing refers to any more (R4). A version whose
setup fails is reported (`deployment`) and the previous policy keeps serving; errors never
escape to the server.

Changes made in this process reconcile at once (`changed`). Changes made elsewhere (another
worker of `--workers N`, another node, the CLI against another process) are noticed by polling
the registry's change counter, one cheap query every `reconcile_interval_s`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

from modelserve.config import RegistryConfig
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import registry as repo
from modelserve.errors import ConflictError, ModelserveError, ServiceNotFoundError
from modelserve.registry.artifacts import ArtifactStore
from modelserve.registry.formats import ArtifactFormat
from modelserve.registry.loading import version_spec
from modelserve.registry.views import canary_pairs
from modelserve.runtime.manager import ModelRuntime
from modelserve.runtime.traffic import TrafficPolicy
from modelserve.schemas.registry import (
    DeployedVersionPublic,
    DeploymentPublic,
    Split,
    TrafficPublic,
)
from modelserve.service.spec import ServiceSpec
from modelserve.types import ServiceStatus

logger = logging.getLogger("modelserve.registry")

UNTRUSTED_FORMATS = frozenset({ArtifactFormat.PICKLE.value, ArtifactFormat.UNKNOWN.value})


@dataclass(frozen=True, slots=True)
class VersionPlan:
    """Everything needed to load one registry version."""

    model: str
    version: str
    service: str
    files: tuple[tuple[str, str], ...]  # (path, sha256)
    trusted: bool
    needs_trust: bool


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a model should serve: the policy and the plans of the versions it names."""

    policy: TrafficPolicy
    plans: dict[str, VersionPlan]


class RegistryDeployer:
    """Reconciles the registry's served aliases and traffic into a ModelRuntime."""

    def __init__(
        self,
        database: Database,
        runtime: ModelRuntime,
        store: ArtifactStore,
        config: RegistryConfig,
        *,
        drain_timeout_s: float = 30.0,
    ) -> None:
        self._database = database
        self._runtime = runtime
        self._store = store
        self._config = config
        self._drain_timeout_s = drain_timeout_s
        # Models served from TARGET files own their names: the registry never touches them.
        self._reserved = frozenset(m.name for m in runtime.models())
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._pins: collections.Counter[tuple[str, str]] = collections.Counter()
        self._owned: set[str] = set()
        # Why a model's wanted state is not fully served now (cleared once it is), and the
        # newest version that failed to load (kept, for whoever asks later).
        self._errors: dict[str, str] = {}
        self._last_failure: dict[str, str] = {}
        self._generation: int | None = None
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._kicked: set[asyncio.Task[None]] = set()
        self.synced = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin serving the registry in the background (the server is live meanwhile)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop polling (loaded versions are stopped with the runtime)."""
        tasks = [t for t in (self._task, *self._kicked) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._poll_once(force=True)
        finally:
            self.synced.set()
        while True:
            await asyncio.sleep(self._config.reconcile_interval_s)
            await self._poll_once(force=False)

    async def _poll_once(self, *, force: bool) -> None:
        try:
            async with self._database.session() as session:
                generation = await repo.get_generation(session=session)
            if force or generation != self._generation:
                self._generation = generation
                await self.reconcile_all()
        except asyncio.CancelledError:
            raise
        except Exception:  # the poller must survive database outages and our own bugs
            # Once per outage, not once per second: the log must stay readable.
            if not self._failing:
                logger.exception("following the registry failed; retrying every poll")
            self._failing = True
            return
        if self._failing:
            logger.info("following the registry again")
        self._failing = False

    # -- serving hooks (see registry.service.ServingHooks) ----------------------------------

    @asynccontextmanager
    async def preparing(self, name: str, versions: Sequence[str]) -> AsyncIterator[None]:
        """Load and warm `versions` before a change commits; keep them loaded meanwhile."""
        keys = [(name, v) for v in versions]
        self._pins.update(keys)
        try:
            if name not in self._reserved:
                async with self._locks[name]:
                    for version in versions:
                        await self._prepare_one(name, version)
            yield
        except BaseException:
            self._kick(name)  # what was loaded for a change that did not happen goes again
            raise
        finally:
            self._pins.subtract(keys)
            self._pins += collections.Counter()  # drop zero counts

    async def _prepare_one(self, name: str, version: str) -> None:
        loaded = self._runtime.versions(name).get(version)
        if loaded is not None and loaded.status is ServiceStatus.READY:
            return
        async with self._database.session() as session:
            plans = await self._plans(session, name, [version])
        plan = plans.get(version)
        if plan is None:
            raise ServiceNotFoundError(f"model {name!r} has no version {version!r}")
        try:
            await self._deploy(plan)
        except ModelserveError as exc:
            raise ConflictError(
                f"version {version!r} of {name!r} cannot be served, so nothing was changed:"
                f" {exc.message}",
                details={"reason": _reason(exc)},
            ) from exc

    async def changed(self, name: str) -> None:
        """Serve what the registry now says for `name`."""
        await self.reconcile(name)

    def _kick(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self.reconcile(name))
        self._kicked.add(task)
        task.add_done_callback(self._kicked.discard)

    # -- reconciling -----------------------------------------------------------------------

    async def reconcile_all(self) -> None:
        """Reconcile every served model, and every model this process served before."""
        async with self._database.session() as session:
            rows = await repo.served_models(session=session, alias=self._config.serve_alias)
        for name in sorted({model.name for model, _, _ in rows} | self._owned):
            await self.reconcile(name)

    async def reconcile(self, name: str) -> None:
        """Make the runtime serve what the registry wants for `name`; never raises."""
        if name in self._reserved:
            self._errors[name] = "a TARGET file serves this name, so the registry does not"
            return
        async with self._locks[name]:
            try:
                await self._reconcile(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._errors[name] = _reason(exc)
                logger.exception("reconciling model %r failed", name)

    async def _reconcile(self, name: str) -> None:
        async with self._database.session() as session:
            wanted = await self._wanted(session, name)
        if wanted is None:
            await self._unserve(name)
            return
        failed: dict[str, str] = {}
        policy = wanted.policy
        for version in sorted(policy.versions, key=lambda v: v != policy.primary):
            plan = wanted.plans.get(version)
            if plan is None:
                failed[version] = "no such version in the registry"
                continue
            try:
                await self._deploy(plan)
            except ModelserveError as exc:
                failed[version] = _reason(exc)
        if policy.primary in failed:
            self._errors[name] = f"version {policy.primary!r}: {failed[policy.primary]}"
            logger.error(
                "model %r: %s; the previous version keeps serving", name, self._errors[name]
            )
            await self._retire_unused(name)
            return
        if failed:
            # A canary or shadow that cannot load is left out; the primary still serves.
            policy = TrafficPolicy(
                primary=policy.primary,
                canary=tuple((v, p) for v, p in policy.canary if v not in failed),
                sticky=policy.sticky,
                shadow=None if policy.shadow in failed else policy.shadow,
                shadow_percent=0.0 if policy.shadow in failed else policy.shadow_percent,
            )
        if self._runtime.policy(name) != policy:
            await self._runtime.set_policy(name, policy)
        self._owned.add(name)
        if failed:
            self._errors[name] = "; ".join(f"version {v!r}: {r}" for v, r in failed.items())
        else:
            self._errors.pop(name, None)
        await self._retire_unused(name)

    async def _unserve(self, name: str) -> None:
        if name not in self._owned:
            return
        await self._runtime.withdraw(name)
        await self._retire_unused(name)
        if not self._runtime.versions(name):
            self._owned.discard(name)
        self._errors.pop(name, None)

    async def _retire_unused(self, name: str) -> None:
        policy = self._runtime.policy(name)
        keep = policy.versions if policy is not None else frozenset()
        for version in list(self._runtime.versions(name)):
            if version in keep or self._pins[(name, version)] > 0:
                continue
            try:
                await self._runtime.retire(name, version, drain_timeout_s=self._drain_timeout_s)
            except (ConflictError, ServiceNotFoundError):
                continue  # referenced again, or already gone: the next reconcile decides
            logger.info("model %r version %s retired", name, version)

    async def _deploy(self, plan: VersionPlan) -> None:
        loaded = self._runtime.versions(plan.model).get(plan.version)
        if loaded is not None and loaded.status is ServiceStatus.READY:
            return
        try:
            if plan.needs_trust and not plan.trusted:
                raise ConflictError(
                    "its artifacts need trust (pickle or unverified files) and it is not trusted"
                )
            spec = await asyncio.to_thread(self._spec, plan)
            await self._runtime.deploy(spec)
        except ModelserveError as exc:
            self._last_failure[plan.model] = f"version {plan.version!r}: {_reason(exc)}"
            raise

    def _spec(self, plan: VersionPlan) -> ServiceSpec:
        folder = self._store.materialize(
            plan.model, plan.version, {PurePosixPath(p): sha for p, sha in plan.files}
        )
        return version_spec(
            plan.service, model=plan.model, version=plan.version, artifact_dir=folder
        )

    # -- reading the registry --------------------------------------------------------------

    async def _wanted(self, session: Session, name: str) -> Wanted | None:
        model = await repo.get_model(session=session, name=name)
        if model is None:
            return None
        alias = await repo.get_alias(
            session=session, model_id=model.id, name=self._config.serve_alias
        )
        if alias is None:
            return None
        primary = (await repo.versions_by_id(session=session, ids=[alias.version_id]))[
            alias.version_id
        ].version
        traffic = await repo.get_traffic(session=session, model_id=model.id)
        canary = tuple((v, p) for v, p in canary_pairs(traffic) if v != primary and p > 0)
        shadow = traffic.shadow_version if traffic is not None else None
        shadow_percent = traffic.shadow_percent if traffic is not None else 0.0
        if shadow == primary or not shadow_percent:
            shadow, shadow_percent = None, 0.0
        policy = TrafficPolicy(
            primary=primary,
            canary=canary,
            sticky=bool(traffic and traffic.sticky),
            shadow=shadow,
            shadow_percent=shadow_percent,
        )
        return Wanted(policy=policy, plans=await self._plans(session, name, list(policy.versions)))

    async def _plans(
        self, session: Session, name: str, versions: Sequence[str]
    ) -> dict[str, VersionPlan]:
        model = await repo.get_model(session=session, name=name)
        if model is None:
            return {}
        rows = await repo.get_versions(session=session, model_id=model.id, versions=versions)
        files = await repo.version_files(session=session, version_ids=[r.id for r in rows.values()])
        return {
            label: VersionPlan(
                model=name,
                version=label,
                service=row.service,
                files=tuple((f.path, f.sha256) for f in files[row.id]),
                trusted=row.trusted,
                needs_trust=any(f.format in UNTRUSTED_FORMATS for f in files[row.id]),
            )
            for label in versions
            if (row := rows.get(label)) is not None
        }

    # -- reporting -------------------------------------------------------------------------

    def deployment(self, name: str) -> DeploymentPublic:
        """What this process serves for `name`, and the last error deploying it."""
        policy = self._runtime.policy(name) if name not in self._reserved else None
        serving = policy is not None and name in self._owned
        versions = self._runtime.versions(name) if name not in self._reserved else {}
        return DeploymentPublic(
            model=name,
            serving=serving,
            traffic=_traffic(policy) if serving and policy is not None else None,
            versions=[
                DeployedVersionPublic(version=v, status=d.status.value, reason=d.reason)
                for v, d in sorted(versions.items())
            ],
            error=self._errors.get(name),
            last_failure=self._last_failure.get(name),
        )


def _traffic(policy: TrafficPolicy) -> TrafficPublic:
    return TrafficPublic(
        primary=policy.primary,
        canary=[Split(version=v, percent=p) for v, p in policy.canary if p > 0],
        sticky=policy.sticky,
        shadow=(
            Split(version=policy.shadow, percent=policy.shadow_percent)
            if policy.shadow is not None and policy.shadow_percent > 0
            else None
        ),
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ModelserveError):
        details = exc.details
        if isinstance(details, dict) and details.get("reason"):
            return f"{exc.message} ({details['reason']})"
        return exc.message
    return f"{type(exc).__name__}"
