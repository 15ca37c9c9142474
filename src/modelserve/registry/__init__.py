"""The model registry (engine layer): models, immutable versions, artifacts, aliases, rollouts.

No HTTP here: `modelserve.http.registry_routes` translates. `Registry` (models and versions),
`Rollouts` (aliases, rollback, traffic) and `RegistryDeployer` (serving what the aliases point
at) sit on the database and an `ArtifactStore`.
"""
