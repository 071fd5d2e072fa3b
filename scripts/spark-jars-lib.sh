# Shared by scripts/spark-kafka.sh and scripts/spark-s3.sh (sourced, not run): jars that PySpark lacks, fetched
# from Maven Central with Maven into ~/.cache/sluice/<name>/jars once, never at run time.
#
#   lock_cache DIR                    hold an exclusive lock on DIR (created) until the script exits: two callers at
#                                     once (pytest-xdist workers) would delete each other's staging folder
#   need_mvn                          Maven on PATH (installed with apt-get when missing and running as root)
#   mvn_fetch POM_DIR STAGING G:A:V   one Maven run: the runtime dependencies of G:A:V (G:A:V included) into STAGING;
#                                     the log is POM_DIR/mvn.log; fails when the artifact itself was not fetched
#   drop_shipped STAGING              remove the jars PySpark already ships (at whatever version)
#   finish STAGING JARS               move STAGING to JARS and mark it complete (.complete); print JARS
#
# Needs $python (a Python with PySpark) and say/die defined by the caller.

lock_cache() {
    mkdir -p "$1"
    exec 9>"$1/.lock"
    flock 9 || die "could not lock $1/.lock"
}

need_mvn() {
    if ! command -v mvn >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing maven with apt-get"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven) >&2
        fi
        command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"
    fi
}

mvn_fetch() {
    local dir="$1" staging="$2" group artifact version
    IFS=: read -r group artifact version <<<"$3"
    rm -rf "$staging"
    mkdir -p "$dir"
    cat >"$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.dev</groupId>
  <artifactId>$artifact-jars</artifactId>
  <version>$version</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency>
  </dependencies>
</project>
POM
    say "fetching $group:$artifact:$version with Maven into $staging (log: $dir/mvn.log)"
    mvn -B -f "$dir/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging" \
        >"$dir/mvn.log" 2>&1 && [ -f "$staging/$artifact-$version.jar" ]
}

# A second scala-library, hadoop-client or slf4j on the class path, at another version, would shadow Spark's own.
drop_shipped() {
    "$python" - "$1" <<'PY'
import os, re, sys
import pyspark
def name(jar):
    return re.sub(r"-\d[^-]*(-[a-z]+)?\.jar$", "", jar)
shipped = {name(jar) for jar in os.listdir(os.path.join(os.path.dirname(pyspark.__file__), "jars"))}
for jar in os.listdir(sys.argv[1]):
    if jar.endswith(".jar") and name(jar) in shipped:
        os.remove(os.path.join(sys.argv[1], jar))
PY
}

finish() {
    rm -rf "$2"
    mv "$1" "$2"
    touch "$2/.complete"
    echo "$2"
}
