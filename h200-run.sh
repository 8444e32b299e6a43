#!/bin/bash
. .gpu/env.sh
export NO_COLOR=1
D="deno run --cached-only -A main.ts"
$D bench model --preset tnl-385m --filter decode --repeats 2 --warmup 1 --json $OUT/dec4.json 2>&1 | tail -7
start=$(date +%s.%N); $D demo --json > $OUT/demo.json 2> $OUT/demo.err; echo "demo rc=$? wall $(echo "$(date +%s.%N) - $start" | bc) s"; tail -5 $OUT/demo.err
start=$(date +%s.%N); deno test --cached-only --allow-read --allow-write --allow-env --allow-run tests/ > $OUT/test.log 2>&1; echo "test rc=$? wall $(echo "$(date +%s.%N) - $start" | bc) s"; tail -3 $OUT/test.log; grep -E '\.\.\. FAILED' $OUT/test.log | head
