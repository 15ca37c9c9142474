"""Where the token signing key comes from, and the start-up check of auth settings (S17).

Production mode refuses to start without a real secret: HS256 needs `auth.jwt_secret` of at
least 32 bytes that is not a known placeholder; EdDSA needs `auth.jwt_private_key`. In dev
mode with no secret set, a random one is created once in `<data_dir>/jwt-secret` (mode 0600)
so every worker process and every restart signs with the same key.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from modelserve.auth.tokens import SigningKeys, eddsa_keys, hs256_keys
from modelserve.config import Settings
from modelserve.errors import ConfigError

MIN_SECRET_BYTES = 32
DEV_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)
# Placeholders people paste from examples; refused in prod even when long enough.
WEAK_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "secret",
        "jwt-secret",
        "dev",
        "development",
        "modelserve",
        "please-change-me",
        "your-secret-key",
        "supersecret",
    }
)
SETUP_HINT = (
    "set MODELSERVE_AUTH__JWT_SECRET to a random value of at least 32 bytes, e.g. the output"
    " of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
)


def check_auth_settings(settings: Settings) -> None:
    """Raise ConfigError, saying what to set, when auth settings are unsafe for the mode.

    `AuthSystem` calls it when built; the CLI should call it before binding a port, so a
    misconfigured production server never starts listening.
    """
    auth = settings.auth
    if settings.mode != "prod" or not auth.enabled:
        return
    if auth.jwt_algorithm == "EdDSA":
        if auth.jwt_private_key is None:
            raise ConfigError(
                "production mode with EdDSA tokens needs MODELSERVE_AUTH__JWT_PRIVATE_KEY"
                " (an Ed25519 private key in PEM)"
            )
        eddsa_keys(auth.jwt_private_key.get_secret_value().encode())
        return
    if auth.jwt_secret is None:
        raise ConfigError(f"production mode refuses to start without a JWT secret: {SETUP_HINT}")
    secret = auth.jwt_secret.get_secret_value()
    if secret.strip().lower() in WEAK_SECRETS or _looks_placeholder(secret):
        raise ConfigError(f"the JWT secret is a placeholder: {SETUP_HINT}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"the JWT secret is shorter than {MIN_SECRET_BYTES} bytes: {SETUP_HINT}")


def signing_keys(settings: Settings) -> SigningKeys:
    """The keys tokens are signed and verified with, per settings (see module docstring)."""
    auth = settings.auth
    if auth.jwt_algorithm == "EdDSA":
        if auth.jwt_private_key is None:
            raise ConfigError("EdDSA tokens need MODELSERVE_AUTH__JWT_PRIVATE_KEY (Ed25519 PEM)")
        return eddsa_keys(auth.jwt_private_key.get_secret_value().encode())
    if auth.jwt_secret is not None:
        return hs256_keys(auth.jwt_secret.get_secret_value().encode())
    if settings.mode == "prod":
        raise ConfigError(f"production mode refuses to start without a JWT secret: {SETUP_HINT}")
    return hs256_keys(dev_secret(settings.data_dir))


def dev_secret(data_dir: Path) -> bytes:
    """The development signing secret of this data directory, created on first use."""
    path = data_dir / DEV_SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when several workers start at once, exactly one writes the secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
    for _ in range(100):
        value = path.read_bytes().strip()
        if value:
            return value
        time.sleep(0.01)  # another worker created the file and is writing it
    raise ConfigError(f"{path} is empty; delete it and start again")


def _looks_placeholder(secret: str) -> bool:
    lowered = secret.lower()
    return ("change" in lowered and "me" in lowered) or len(set(secret)) < 8
