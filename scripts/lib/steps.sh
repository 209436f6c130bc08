# shellcheck shell=bash
# Steps and what happens when one fails, sourced by scripts/dev and scripts/bench.
#
# Every step of `up`, `test`, `bench` and `down` runs through `step NAME COMMAND...`: its output
# goes to its own log ($LOGS/steps/NAME.log), our progress lines go to the terminal. When
# anything fails — a command under `set -e`, an unset variable, a `die` — the ERR and EXIT traps
# say which step failed, which command and where, and show the end of the step's log. A script
# that stops without saying why is a bug (a first install once died silently in a `$(…)`).

# The terminal's stderr, kept on fd 3 while a step's output goes to its log.
exec 3>&2

STEP="" # the step running now ("" between steps)
STEP_LOG=""
FAILURE_REPORTED=""
# Logs of steps that run before the state folder is known (installing packages) go here.
STEP_LOG_DIR=${TMPDIR:-/tmp}/dana-dev-steps

log() { printf '\033[1;34m[dev]\033[0m %s\n' "$*" >&3; }

# Stops with a message; the EXIT trap adds the step and the end of its log.
die() {
  printf '\033[1;31m[dev] %s\033[0m\n' "$*" >&3
  exit 1
}

# Runs one step with its output in its own log. `set -e` stays in force inside (the step is
# not called from a condition), so the first failing command ends it through the traps below.
step() { # name, command...
  local name=$1
  shift
  mkdir -p "$STEP_LOG_DIR"
  STEP=$name
  STEP_LOG=$STEP_LOG_DIR/$name.log
  : >"$STEP_LOG"
  "$@" >>"$STEP_LOG" 2>&1
  STEP=""
  STEP_LOG=""
}

# Once the state folder exists, step logs live beside the other logs.
use_step_log_dir() { STEP_LOG_DIR=$1/steps; }

report_failure() { # status, what failed (may be empty)
  [[ -z $FAILURE_REPORTED ]] || return 0
  FAILURE_REPORTED=1
  local where=${STEP:-"(between steps)"}
  {
    printf '\033[1;31m[dev] step "%s" failed (exit %s)\033[0m\n' "$where" "$1"
    [[ -n $2 ]] && printf '[dev]   %s\n' "$2"
    if [[ -n $STEP_LOG && -s $STEP_LOG ]]; then
      printf '[dev] last lines of %s:\n' "$STEP_LOG"
      tail -n 40 "$STEP_LOG" | sed 's/^/    /'
    fi
  } >&3
}

on_err() { # status, command, file:line, function stack
  # Inside a `$(…)` the outer shell sees the failure too and reports it with more context.
  ((BASH_SUBSHELL == 0)) || return 0
  report_failure "$1" "\`$2\` failed at $3 (in ${4:-main})"
}

on_exit() {
  local status=$?
  ((status == 0)) || report_failure "$status" ""
}

install_failure_traps() {
  set -o errtrace
  shopt -s inherit_errexit
  trap 'on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]##*/}:$LINENO" "${FUNCNAME[*]}"' ERR
  trap on_exit EXIT
}
