#!/usr/bin/env bash
# Hadoop's S3A file system for Spark (s3a://), so `engine: spark` streaming objects can write to an S3 lake and keep
# their checkpoint there (docs/engines.md), fetched from Maven Central with Maven once, never at run time.
#
#   scripts/spark-s3.sh    put the jars in the cache if missing; print the folder
#
# The jars are org.apache.hadoop:hadoop-aws at the Hadoop version PySpark bundles (read from its
# hadoop-client-api jar: hadoop-aws must match hadoop-common exactly) and its runtime dependencies: the AWS
# SDK v2 bundle (software.amazon.awssdk:bundle, about 690 MB, shaded), analyticsaccelerator-s3,
# wildfly-openssl; minus what PySpark already ships. They go to ~/.cache/sluice/spark-s3-<hadoop>/jars
# (SLUICE_SPARK_JARS_CACHE overrides the parent folder), where sluice.transforms.spark_session finds them for
# `spark.jars`. Idempotent: a complete folder is kept (marked by .complete); a partial download never looks
# complete; a second run at the same time waits for the first (a lock).
#
# Needs Maven (installed with apt-get when missing and running as root) and PySpark (pip install 'sluice[spark]').
# Environment: SLUICE_SPARK_JARS_CACHE, PYTHON (default python3).
set -euo pipefail

python="${PYTHON:-python3}"
say() { echo "spark-s3.sh: $*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=scripts/spark-jars-lib.sh
. "$(dirname "$0")/spark-jars-lib.sh"

hadoop_version="$("$python" - <<'PY'
import glob, os, re, sys
try:
    import pyspark
except ImportError:
    sys.exit("pyspark is not installed: pip install 'sluice[spark]'")
jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
found = [m.group(1) for p in glob.glob(os.path.join(jars, "hadoop-client-api-*.jar"))
         if (m := re.search(r"hadoop-client-api-(\d+\.\d+\.\d+)\.jar$", os.path.basename(p)))]
if not found:
    sys.exit(f"no hadoop-client-api jar in {jars}: this PySpark does not bundle Hadoop")
print(found[0])
PY
)" || die "could not read the Hadoop version of the installed PySpark ($python)"

cache_root="${SLUICE_SPARK_JARS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
cache="$cache_root/spark-s3-$hadoop_version"
jars="$cache/jars"
lock_cache "$cache"  # a second caller waits here, then finds the folder complete
if [ -f "$jars/.complete" ]; then
    echo "$jars"
    exit 0
fi
need_mvn
staging="$cache/jars.partial"
mvn_fetch "$cache" "$staging" "org.apache.hadoop:hadoop-aws:$hadoop_version" || {
    tail -n 30 "$cache/mvn.log" >&2
    die "mvn could not fetch org.apache.hadoop:hadoop-aws:$hadoop_version (log above: $cache/mvn.log)"
}
drop_shipped "$staging"
finish "$staging" "$jars"
