#!/bin/bash
# A whole film on a Slurm cluster: N array tasks stylize one segment each, then one job joins
# them once all succeeded.
#
#   examples/slurm/film.sh /shared/film.mkv /shared/film-styled.mp4 32 --style 13 --smooth 0.3
#
# Arguments: FILM OUTPUT N [atelier video options...]. The parts go to OUTPUT.parts/, in
# OUTPUT's container. N is at most the film's keyframe count (a film has one every few seconds).
# Pass an encoder as for `atelier video` (--codec, --crf, --preset); the join copies it, so
# OUTPUT's container must take that codec (ffv1: .mkv). Options for sbatch itself (account,
# partition, or other resources than the scripts' one GPU and 4 cores) go in SBATCH_ARGS,
# e.g. SBATCH_ARGS="--partition=gpu --account=film".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
film=${1:?usage: film.sh FILM OUTPUT N [atelier video options...]}
output=${2:?usage: film.sh FILM OUTPUT N [atelier video options...]}
count=${3:?usage: film.sh FILM OUTPUT N [atelier video options...]}
shift 3
parts="$output.parts"
mkdir -p "$parts"
export ATELIER_ARGS="$*"
# The array's task ids are its shard indices: 0 .. N-1.
# shellcheck disable=SC2086 # SBATCH_ARGS is a list of options
array=$(sbatch --parsable ${SBATCH_ARGS:-} --array="0-$((count - 1))" --export=ALL \
    "$here/film-segment.sbatch" "$film" "$parts" "${output##*.}")
array=${array%%;*} # `jobid;cluster` on federated clusters
# shellcheck disable=SC2086
join=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    "$here/film-join.sbatch" "$film" "$parts" "$output")
echo "segments: job $array (tasks 0-$((count - 1))), join: job $join -> $output"
