#!/bin/sh
# Writes random secrets for deploy/compose.yaml into this folder (files ignored by git), once:
# an existing file is kept, so running it again changes nothing. docs/deploy.md, "Compose".
#
# Compose (outside swarm) bind-mounts a secret file with its host owner and mode, so the
# containers' user (uid 10001) must be able to read it: the files are 0644 and this folder
# 0700, which keeps other users of the host out.
set -eu
cd "$(dirname "$0")"
chmod 700 .
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")'; }
write() {
  cat > "$1"
  chmod 644 "$1"
}
[ -f jwt_secret ] || random | write jwt_secret
[ -f postgres_password ] || random | write postgres_password
[ -f rabbitmq_password ] || random | write rabbitmq_password
[ -f database_url ] || printf 'postgresql://modelserve:%s@postgres:5432/modelserve' \
  "$(cat postgres_password)" | write database_url
echo "secrets in $(pwd): jwt_secret database_url postgres_password rabbitmq_password"
