#!/bin/sh
# End to end `unirep plot`: a 3-epoch metrics.jsonl (with a NaN loss and the torn last line of a killed run)
# must give three valid PNGs, each reported. Usage: check_plot.sh UNIREP WORK_DIR.
# Exits 77 (skipped) when unirep plot finds no Python with matplotlib (its exit code 3).
set -u
unirep=$1
dir=$2
rm -rf "$dir" && mkdir -p "$dir" || exit 1
step=0
for epoch in 1 2 3; do
  for i in 1 2 3 4 5 6 7 8 9 10; do
    step=$((step + 1))
    hundredths=$((300 - step * 9))
    loss=$((hundredths / 100)).$((hundredths % 100 / 10))$((hundredths % 10))
    [ $step -eq 12 ] && loss=null
    printf '{"kind":"step","epoch":%d,"step":%d,"loss":%s,"lr":%d.0e-4,"img_per_s":1000.0,"time":%d}\n' \
      $epoch $step $loss $((step < 10 ? step : 10)) $step
  done
  printf '{"kind":"epoch","epoch":%d,"step":%d,"train_loss":%s,"top1":0.%d,"top5":0.%d,"ema_top1":0.%d,' \
    $epoch $step $loss $((50 + epoch * 10)) $((80 + epoch * 5)) $((48 + epoch * 10))
  printf '"ema_top5":0.%d,"eval_loss":1.%d,"time":%d}\n' $((79 + epoch * 5)) $((9 - epoch)) $step
done >"$dir/metrics.jsonl"
printf '{"kind":"step","epo' >>"$dir/metrics.jsonl"

"$unirep" plot "$dir" --out "$dir/png" >"$dir/output.txt" 2>&1
rc=$?
cat "$dir/output.txt"
[ $rc -eq 3 ] && { echo "no Python with matplotlib: skipped"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: unirep plot exited with $rc"; exit 1; }
for name in loss lr accuracy; do
  png=$dir/png/$name.png
  magic=$(od -An -tx1 -N8 "$png" 2>/dev/null | tr -d ' \n')
  [ "$magic" = 89504e470d0a1a0a ] || { echo "FAIL: $png is not a PNG (starts with '$magic')"; exit 1; }
  grep -qxF "wrote $png" "$dir/output.txt" || { echo "FAIL: unirep plot did not report $png"; exit 1; }
done
echo "OK: three PNGs"
