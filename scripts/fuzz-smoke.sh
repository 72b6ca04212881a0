#!/usr/bin/env bash
# Smoke-fuzz every cargo-fuzz target in fuzz/ for a short while.
#
#   scripts/fuzz-smoke.sh                 # each target 20 s
#   FUZZ_SECONDS=60 scripts/fuzz-smoke.sh
#   FUZZ_TARGETS="spnego_resp" scripts/fuzz-smoke.sh
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_TARGETS    space-separated subset of targets (default: all in fuzz/Cargo.toml)
#   FUZZ_SANITIZER  cargo-fuzz -s value (default none: the fuzzed crates forbid
#                   unsafe code, so ASan adds build time and no signal)
#
# Runs on a stable toolchain: cargo-fuzz passes -Z flags, which stable rustc
# accepts with RUSTC_BOOTSTRAP=1. Builds with debug assertions (so integer
# overflow panics too). Seeds come from fuzz/corpus/<target>/ and are never
# written to; new units go to a temporary directory. A crashing input is kept in
# fuzz/artifacts/<target>/.
#
# Exit status: 0 all targets ran clean; 1 a target crashed, timed out or ran out
# of memory; 2 setup failed (cargo-fuzz could not be installed, or the build failed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_QUIET="${CARGO_TERM_QUIET:-true}"

log() { printf 'fuzz-smoke: %s\n' "$*" >&2; }

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    log "FUZZ_SECONDS must be a positive integer, got '$seconds'"
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    if ! cargo install cargo-fuzz --locked --quiet >/dev/null 2>&1; then
        log "could not install cargo-fuzz"
        exit 2
    fi
fi

cd "$fuzz_dir"
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
    log "no fuzz targets found in $fuzz_dir"
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/iwa-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

build_flags=(-s "$sanitizer" --debug-assertions)
if ! cargo fuzz build "${build_flags[@]}" >"$work/build.log" 2>&1; then
    log "build failed:"
    tail -n 40 "$work/build.log" >&2
    exit 2
fi

failed=()
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "$fuzz_dir/artifacts/$target" "$fuzz_dir/corpus/$target"
    target_log="$work/$target.log"
    status=0
    cargo fuzz run "${build_flags[@]}" "$target" \
        "$work/corpus/$target" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$fuzz_dir/artifacts/$target/" -print_final_stats=1 \
        >"$target_log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$target_log" | tail -n 1)"
    cov="$(grep -Eo 'cov: [0-9]+' "$target_log" | tail -n 1 || true)"
    if [ "$status" -eq 0 ]; then
        log "$target: ok, ${execs:-?} execs in ${seconds}s, ${cov:-cov: ?}"
    else
        log "$target: FAILED (exit $status) after ${execs:-?} execs"
        if ! grep -E -A 1 '^(thread .* panicked|==[0-9]+== ?ERROR|SUMMARY|artifact_prefix|Base64:)' "$target_log" | head -n 24 >&2; then
            tail -n 30 "$target_log" >&2
        fi
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "crashes in: ${failed[*]} (inputs in fuzz/artifacts/; reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a -s $sanitizer <target> <file>)"
    exit 1
fi
