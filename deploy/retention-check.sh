#!/bin/sh
# Run `petportrait retention check` (daily, from cron or a systemd timer) and leave its result where
# node_exporter's textfile collector reads it; alerts PetportraitRetentionCheckFailing / ...NotRun read it.
#   deploy/retention-check.sh /var/lib/node_exporter/textfile   [extra arguments for the check, e.g. --deep]
# In the compose fleet: docker compose run --rm migrate retention check  (the exit status says the same).
set -u
dir="${1:?usage: retention-check.sh TEXTFILE_DIR [check arguments]}"
shift
if petportrait retention check "$@"; then ok=1; else ok=0; fi
tmp="$dir/.petportrait_retention_check.prom.$$"
{
  echo "# HELP petportrait_retention_check_ok 1 when the newest retention check found nothing wrong."
  echo "# TYPE petportrait_retention_check_ok gauge"
  echo "petportrait_retention_check_ok $ok"
  echo "# HELP petportrait_retention_check_last_run_timestamp_seconds When the newest retention check ran."
  echo "# TYPE petportrait_retention_check_last_run_timestamp_seconds gauge"
  echo "petportrait_retention_check_last_run_timestamp_seconds $(date +%s)"
} >"$tmp" && mv "$tmp" "$dir/petportrait_retention_check.prom"
[ "$ok" = 1 ]
