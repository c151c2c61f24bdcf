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
# The C2PA signing certificate chain and key: your own (a CA-issued ES256 pair). For a trial, a development
# pair (marked "development", trusted by nothing else) from the image: IMAGE=petportrait:latest.
if [ ! -s "$dir/signing_cert" ] || [ ! -s "$dir/signing_key" ]; then
  engine="$(command -v podman || command -v docker || true)"
  if [ -n "$engine" ]; then
    "$engine" run --rm --entrypoint python3 "${IMAGE:-petportrait:latest}" -c \
      'from petportrait.rights.provenance import make_development_chain as m; import sys, json; c, k, _ = m(); print(json.dumps([c.decode(), k.decode()]))' \
      | python3 -c 'import json, sys; c, k = json.load(sys.stdin); open(sys.argv[1], "w").write(c); open(sys.argv[2], "w").write(k)' \
        "$dir/signing_cert" "$dir/signing_key" \
      && echo "wrote a DEVELOPMENT signing pair: replace signing_cert and signing_key with your own"
  else
    echo "put your C2PA certificate chain and key in $dir/signing_cert and $dir/signing_key"
  fi
fi
echo "secrets in $dir: keep kek backed up apart from the database and the blobs"
