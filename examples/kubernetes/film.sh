#!/bin/bash
# The film on Kubernetes: the segments Job, then (once every index completed) the join Job.
#   examples/kubernetes/film.sh [TIMEOUT]     (default 24h)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kubectl apply -f "$here/film-segments.yaml"
kubectl wait --for=condition=complete job/atelier-film-segments --timeout="${1:-24h}"
kubectl apply -f "$here/film-join.yaml"
kubectl wait --for=condition=complete job/atelier-film-join --timeout=1h
echo "joined: /data/film-styled.mp4 on the volume atelier-data"
