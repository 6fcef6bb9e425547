#!/usr/bin/env bash
# Run a command (the test suite) beside the servers some tests need: PostgreSQL (store tests on both
# backends) and a single-node SLURM cluster (SLURM executor tests). Both are installed with apt-get when
# missing (root only), started on loopback under /tmp, and stopped by their PIDs when the command ends.
# Without root and without the packages, the command still runs: those tests skip, and fail when $CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
stops=()
cleanup() { for stop in "${stops[@]}"; do "$stop" || true; done; }
trap cleanup EXIT
can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
if [ -z "${TANSAKU_TEST_POSTGRES_URL:-}" ]; then
    if ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || can_install; then
        source .ci/postgres.sh && stops+=(stop_postgres)
    else
        echo "PostgreSQL not installed and no root to install it: PostgreSQL tests will skip" >&2
    fi
fi
if [ -z "${TANSAKU_TEST_SLURM:-}" ]; then
    if { command -v slurmctld >/dev/null && [ "$(id -u)" = 0 ]; } || can_install; then
        source .ci/slurm.sh && stops+=(stop_slurm)
    else
        echo "no root to run a SLURM test cluster: SLURM tests will skip" >&2
    fi
fi
"$@"
