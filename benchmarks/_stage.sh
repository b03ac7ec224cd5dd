# Sourced by the benchmark scripts: `stage NAME CMD...` runs CMD and appends its wall time to
# $OUT/timings.txt (the caller sets OUT and creates the directory).
: > "$OUT/timings.txt"
stage() {
    local name=$1; shift
    local t0=$SECONDS
    "$@"
    printf '%-32s %6ds\n' "$name" $((SECONDS - t0)) | tee -a "$OUT/timings.txt"
}
