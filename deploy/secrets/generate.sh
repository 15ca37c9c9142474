#!/bin/sh
# Writes random secrets for deploy/compose.yaml into this folder (files ignored by git), once:
# an existing file is kept, so running it again changes nothing. docs/deploy.md, "Compose".
set -eu
cd "$(dirname "$0")"
umask 077
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")'; }
[ -f jwt_secret ] || random > jwt_secret
[ -f postgres_password ] || random > postgres_password
[ -f rabbitmq_password ] || random > rabbitmq_password
[ -f database_url ] || printf 'postgresql://modelserve:%s@postgres:5432/modelserve' "$(cat postgres_password)" > database_url
echo "secrets in $(pwd): jwt_secret database_url postgres_password rabbitmq_password"
