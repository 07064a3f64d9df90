# Sourced by the sizing scripts: the release examples' directory ($bin), a work directory
# ($work, given or made), and every process started and put in $pids killed, and $work removed,
# when the script ends, also on failure.
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples
work=${work:-$(mktemp -d)}
pids=()
stop_all() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
