#!/bin/sh
# Creates the role the service connects as (not the schema owner: row-level security applies to it).
# Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d); `email-service db upgrade`,
# run as the owner, grants it DML on every table.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE email_service_app LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'app_password';
SQL
