#!/usr/bin/env bash
# The full check, as `make test` and CI run it:
#   1. ruff check           2. mypy --strict leadflow
#   3. pytest on SQLite      4. the same pytest suite on PostgreSQL
#
# Every step runs even when an earlier one failed, so one run shows every problem; the script exits
# non-zero when any step failed. Extra arguments go to both pytest runs (e.g. `-k lifecycle -x`).
# LEADFLOW_TEST_SKIP_LINT=1 skips steps 1 and 2 (`make reliability` runs its tests on both databases).
#
# PostgreSQL: when a server is installed, the cluster is started if it is down (and left running:
# another run may be using it), a throwaway role with a random password and a throwaway database are
# created through the postgres superuser, and both are dropped on exit, also after a failure or ^C.
# Set LEADFLOW_TEST_PG_URL=postgresql+psycopg://... to use an existing database instead. Where no
# server exists, or the postgres superuser cannot be reached, the run is SKIPPED with a loud message.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${VENV:-.venv}/bin

SUMMARY=()
FAILED=0

banner() { printf '\n==> %s\n' "$*"; }

loud() {
    local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    printf '\n%s\n!!! %s\n%s\n\n' "$line" "$*" "$line"
}

record() {  # record STATUS NAME [DETAIL]
    SUMMARY+=("$(printf '%-8s %s%s' "$1" "$2" "${3:+  ($3)}")")
    if [ "$1" = FAIL ]; then FAILED=1; fi
}

run_step() {  # run_step NAME COMMAND...
    local name=$1 rc
    shift
    banner "$name"
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        record PASS "$name"
    elif [ "$rc" -eq 5 ] && [[ $name == pytest* ]]; then
        record FAIL "$name" "no tests collected"
    else
        record FAIL "$name" "exit $rc"
    fi
    return "$rc"
}

# --------------------------------------------------------------------------------- lint and types

if [ ! -x "$BIN/python" ]; then
    echo "no virtualenv at ${VENV:-.venv}: run 'make venv' (or 'make test') first" >&2
    exit 2
fi

LINT_PATHS=()
for p in leadflow tests bench; do
    if [ -e "$p" ]; then LINT_PATHS+=("$p"); fi
done
if [ -z "${LEADFLOW_TEST_SKIP_LINT:-}" ]; then
    run_step "ruff check ${LINT_PATHS[*]}" "$BIN/ruff" check "${LINT_PATHS[@]}"
    run_step "mypy --strict leadflow" "$BIN/mypy" --strict leadflow
fi

# --------------------------------------------------------------------------------- chromium

# The browser tests (tests/test_web_browser.py) drive Debian's Chromium at /usr/bin/chromium.
if [ ! -x /usr/bin/chromium ]; then
    banner "installing chromium for the browser tests (apt-get)"
    APT=(apt-get)
    if [ "$(id -u)" -ne 0 ]; then APT=(sudo -n apt-get); fi
    "${APT[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq chromium \
        || echo "WARNING: could not install chromium; the browser tests will fail" >&2
fi

# --------------------------------------------------------------------------------- SQLite

# Unset: the suite's conftest then uses a temporary SQLite file.
run_step "pytest on SQLite" env -u LEADFLOW_TEST_DATABASE_URL "$BIN/pytest" "$@"

# --------------------------------------------------------------------------------- PostgreSQL

PG_ROLE=""
PG_DB=""
PG_PORT=""
PG_SUPER=()  # how to run a command as the postgres superuser

as_postgres() { (cd / && "${PG_SUPER[@]}" "$@"); }

pg_sql() {  # SQL on stdin, run as the superuser against the maintenance database
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres
}

pg_cleanup() {
    if [ -n "$PG_DB" ] || [ -n "$PG_ROLE" ]; then
        banner "dropping throwaway database ${PG_DB:-?} and role ${PG_ROLE:-?}"
        {
            if [ -n "$PG_DB" ]; then echo "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE);"; fi
            if [ -n "$PG_ROLE" ]; then echo "DROP ROLE IF EXISTS \"$PG_ROLE\";"; fi
        } | pg_sql || echo "WARNING: could not drop $PG_DB / $PG_ROLE; drop them by hand" >&2
        PG_DB=""
        PG_ROLE=""
    fi
}
trap pg_cleanup EXIT
trap 'pg_cleanup; trap - EXIT; exit 130' INT
trap 'pg_cleanup; trap - EXIT; exit 143' TERM

pg_skip() {
    loud "PostgreSQL run SKIPPED: $*"
    record SKIPPED "pytest on PostgreSQL" "$*"
}

# Prints the cluster to use as "VERSION NAME PORT STATUS": an online one if any, else the first.
pg_pick_cluster() {
    pg_lsclusters -h 2>/dev/null | awk '
        $4 ~ /^online/ && !online { online = $1 " " $2 " " $3 " " $4 }
        NR == 1 { first = $1 " " $2 " " $3 " " $4 }
        END { if (online) print online; else if (first) print first }'
}

pg_prepare() {  # returns non-zero after recording SKIPPED or FAIL
    if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin' >/dev/null; then
        pg_skip "no PostgreSQL server installed (no pg_ctlcluster, no /usr/lib/postgresql/*/bin)"
        return 1
    fi

    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            PG_SUPER=(runuser -u postgres --)
        else
            PG_SUPER=(su postgres -s /bin/sh -c '"$0" "$@"')
        fi
    elif [ "$(id -un)" = postgres ]; then
        PG_SUPER=(env)
    elif command -v sudo >/dev/null 2>&1 && sudo -n -u postgres true 2>/dev/null; then
        PG_SUPER=(sudo -n -u postgres --)
    else
        pg_skip "not root and cannot become the postgres user (needed to create a throwaway role)"
        return 1
    fi
    if ! id postgres >/dev/null 2>&1 && [ "$(id -un)" != postgres ]; then
        pg_skip "PostgreSQL is installed but there is no postgres system user"
        return 1
    fi

    local cluster version name status
    cluster=$(pg_pick_cluster)
    if [ -z "$cluster" ]; then
        pg_skip "PostgreSQL binaries are installed but pg_lsclusters lists no cluster to use"
        return 1
    fi
    read -r version name PG_PORT status <<<"$cluster"
    if [[ $status != online* ]]; then
        banner "starting PostgreSQL cluster $version/$name (it was $status; it is left running)"
        local starter=(pg_ctlcluster)
        if [ "$(id -u)" -ne 0 ]; then starter=(as_postgres pg_ctlcluster); fi
        if ! "${starter[@]}" "$version" "$name" start; then
            record FAIL "pytest on PostgreSQL" "could not start cluster $version/$name"
            return 1
        fi
    fi
    local i
    for i in $(seq 1 30); do
        if pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then break; fi
        sleep 1
    done
    if ! pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
        record FAIL "pytest on PostgreSQL" "cluster $version/$name not accepting connections on port $PG_PORT"
        return 1
    fi

    local suffix password
    suffix=$("$BIN/python" -c 'import secrets; print(secrets.token_hex(6))')
    password=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
    PG_ROLE="leadflow_test_$suffix"
    banner "creating throwaway role and database $PG_ROLE on cluster $version/$name (port $PG_PORT)"
    # The password goes through stdin, never a command line.
    if ! pg_sql <<SQL; then
CREATE ROLE "$PG_ROLE" LOGIN PASSWORD '$password';
SQL
        record FAIL "pytest on PostgreSQL" "could not create role $PG_ROLE"
        return 1
    fi
    PG_DB=$PG_ROLE
    if ! pg_sql <<<"CREATE DATABASE \"$PG_DB\" OWNER \"$PG_ROLE\" ENCODING 'UTF8' TEMPLATE template0;"; then
        record FAIL "pytest on PostgreSQL" "could not create database $PG_DB"
        return 1
    fi
    PG_URL="postgresql+psycopg://$PG_ROLE:$password@127.0.0.1:$PG_PORT/$PG_DB"
    return 0
}

PG_URL=""
if [ -n "${LEADFLOW_TEST_PG_URL:-}" ]; then
    PG_URL=$LEADFLOW_TEST_PG_URL
    banner "using LEADFLOW_TEST_PG_URL for the PostgreSQL run"
    run_step "pytest on PostgreSQL" env LEADFLOW_TEST_DATABASE_URL="$PG_URL" "$BIN/pytest" "$@"
elif pg_prepare; then
    run_step "pytest on PostgreSQL" env LEADFLOW_TEST_DATABASE_URL="$PG_URL" "$BIN/pytest" "$@"
fi
pg_cleanup

# --------------------------------------------------------------------------------- summary

printf '\n==================================== summary ====================================\n'
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
    printf '\nFAILED: at least one step failed (see above)\n'
    exit 1
fi
printf '\nOK: every step that ran passed\n'
