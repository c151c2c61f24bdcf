#!/bin/sh
# Make the secret files deploy/compose*.yaml read (once; an existing file is kept): deploy/make-secrets.sh DIR
set -eu
dir="${1:-$(dirname "$0")/secrets}"
umask 077
mkdir -p "$dir"
rand() { python3 -c "import secrets, sys; sys.stdout.write(secrets.token_urlsafe($1))"; }
[ -s "$dir/secret_key" ] || rand 48 >"$dir/secret_key"
[ -s "$dir/kek" ] || python3 -c "import base64, os, sys; sys.stdout.write(base64.b64encode(os.urandom(32)).decode())" >"$dir/kek"
[ -s "$dir/metrics_token" ] || rand 32 >"$dir/metrics_token"
[ -s "$dir/postgres_password" ] || rand 24 >"$dir/postgres_password"
[ -s "$dir/s3_access_key" ] || printf 'petportrait' >"$dir/s3_access_key"
[ -s "$dir/s3_secret_key" ] || rand 32 >"$dir/s3_secret_key"
[ -s "$dir/database_url" ] || printf 'postgresql+psycopg://petportrait:%s@postgres:5432/petportrait' \
  "$(cat "$dir/postgres_password")" >"$dir/database_url"
echo "secrets in $dir: keep kek backed up apart from the database and the blobs"
