#!/bin/sh
# Run once by the postgres image on an empty cluster (docker-entrypoint-initdb.d).
# Two roles (README "Custody ledger: two database roles"): the owner (POSTGRES_USER) owns
# the schema and runs `exhibit db upgrade`; exhibit_app serves requests and is granted, by
# that upgrade, SELECT and INSERT only on custody_event and checkpoint. It owns nothing,
# so it cannot disable the ledger's triggers or rewrite history (issue 11 item 3, AU-06).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_password="$EXHIBIT_APP_PASSWORD" <<'SQL'
CREATE ROLE exhibit_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD :'app_password';
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO exhibit_app;
SQL
