#!/usr/bin/env bash
# Spark's Kafka connector (Structured Streaming's `kafka` source) for streaming objects with `engine: spark`
# (docs/streaming.md), fetched from Maven Central with Maven once, never at run time.
#
#   scripts/spark-kafka.sh    put the connector's jars in the cache if missing; print the folder
#
# The jars are org.apache.spark:spark-sql-kafka-0-10_<scala>:<spark> and its runtime dependencies that the
# PySpark install lacks (kafka-clients, spark-token-provider-kafka-0-10, commons-pool2, ...), at the version of
# the installed PySpark and its Scala (read from pyspark's own jars: Spark 4 is Scala 2.13); when Maven Central
# lacks that exact version (a PySpark released on PyPI before its jars), the newest older release of the same
# major version that it has (the Kafka tests check that it reads with this PySpark). They go to
# ~/.cache/sluice/spark-kafka-<spark>/jars (SLUICE_SPARK_JARS_CACHE overrides the parent folder), where
# sluice.transforms.spark_session finds them for `spark.jars`. Idempotent: a complete folder is kept (marked by
# .complete); a partial download never looks complete; a second run at the same time waits for the first (a lock).
#
# Needs Maven (installed with apt-get when missing and running as root) and PySpark (pip install 'sluice[spark]').
# Environment: SLUICE_SPARK_JARS_CACHE, SLUICE_SPARK_KAFKA_VERSION (the connector version to try first; default
# PySpark's), PYTHON (default python3).
set -euo pipefail

python="${PYTHON:-python3}"
say() { echo "spark-kafka.sh: $*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=scripts/spark-jars-lib.sh
. "$(dirname "$0")/spark-jars-lib.sh"

read -r spark_version scala_version < <("$python" - <<'PY'
import glob, os, re, sys
try:
    import pyspark
except ImportError:
    sys.exit("pyspark is not installed: pip install 'sluice[spark]'")
jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
lib = [m.group(1) for p in glob.glob(os.path.join(jars, "scala-library-*.jar"))
       if (m := re.search(r"scala-library-(\d+\.\d+)\.", os.path.basename(p)))]
print(pyspark.__version__, lib[0] if lib else "2.13")
PY
) || die "could not read the installed PySpark's version ($python)"

cache_root="${SLUICE_SPARK_JARS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
cache="$cache_root/spark-kafka-$spark_version"
jars="$cache/jars"
lock_cache "$cache"  # a second caller waits here, then finds the folder complete
if [ -f "$jars/.complete" ]; then
    echo "$jars"
    exit 0
fi
need_mvn
mkdir -p "$cache"
staging="$cache/jars.partial"
mvnlog="$cache/mvn.log"
artifact="spark-sql-kafka-0-10_$scala_version"

# One Maven run for one connector version: its runtime dependencies minus what PySpark already ships
# (spark-core, spark-sql, scala, hadoop... are `provided` in Spark's pom, so the runtime scope leaves them out).
fetch() { mvn_fetch "$cache" "$staging" "org.apache.spark:$artifact:$1"; }

# The exact version first, then older patch and minor releases of the same major version (X.Y.Z-1 ... X.Y.0,
# X.Y-1.0 ...): a PySpark can reach PyPI before its jars reach Maven Central.
IFS=. read -r major minor patch <<<"${SLUICE_SPARK_KAFKA_VERSION:-$spark_version}"
patch="${patch%%[!0-9]*}"
candidates=()
for ((p = ${patch:-0}; p >= 0; p--)); do candidates+=("$major.$minor.$p"); done
for ((m = minor - 1; m >= 0; m--)); do candidates+=("$major.$m.0"); done
fetched=""
for version in "${candidates[@]}"; do
    if fetch "$version"; then
        fetched="$version"
        break
    fi
    grep -Eq "(Could not find artifact org.apache.spark:$artifact|$artifact:jar:$version was not found)" "$mvnlog" || {
        tail -n 30 "$mvnlog" >&2
        die "mvn could not fetch org.apache.spark:$artifact:$version (log above: $mvnlog)"
    }
done
[ -n "$fetched" ] || die "Maven Central has no org.apache.spark:$artifact for Spark $major (tried ${candidates[*]}; log: $mvnlog)"
[ "$fetched" = "$spark_version" ] ||
    say "Maven Central has no $artifact $spark_version: took $fetched, the newest Spark $major release below PySpark $spark_version that it has"
# Keep only what PySpark lacks.
drop_shipped "$staging"
finish "$staging" "$jars"
