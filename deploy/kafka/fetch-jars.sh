#!/usr/bin/env bash
# Resolves the Apache Kafka broker's jars (deploy/kafka/pom.xml) from Maven Central into a cache
# directory, once: the broker then runs as  java -cp 'DIR/*' kafka.Kafka server.properties.
#
#   deploy/kafka/fetch-jars.sh            prints the directory on its last line
#
# Environment:
#   SLUICE_KAFKA_JARS   the cache directory (default <repo>/.cache/kafka-jars)
#   MVN                 the Maven command (default mvn); extra flags in SLUICE_MAVEN_ARGS, word-split
#                       (e.g. SLUICE_MAVEN_ARGS="-s /path/settings.xml" for a mirror)
#
# Idempotent: DIR/.pom-sha256 holds the hash of the pom the jars came from; when it matches and
# the jars are there nothing is fetched (Maven is not even started). A changed pom resolves
# again into a fresh directory that replaces the old one only once complete, so an interrupted
# fetch never leaves a half-filled cache that looks valid. Concurrent runs serialize on a lock.
# Fails loudly (non-zero, the reason on stderr) when java is missing, when mvn is missing and
# a fetch is needed, or when Maven cannot resolve the jars.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
POM="$HERE/pom.xml"
DIR="${SLUICE_KAFKA_JARS:-$ROOT/.cache/kafka-jars}"
MVN="${MVN:-mvn}"
read -r -a MVN_EXTRA <<<"${SLUICE_MAVEN_ARGS:-}"

die() { echo "fetch-jars: ERROR: $*" >&2; exit 1; }

command -v java >/dev/null 2>&1 \
  || die "java not found on PATH: the Kafka broker needs a Java 17+ runtime (Debian 12: apt-get install openjdk-17-jre-headless)"
[ -f "$POM" ] || die "$POM is missing"

case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR" ;; esac
want="$(sha256sum "$POM" | cut -d' ' -f1)"

cached() {
  [ -f "$DIR/.pom-sha256" ] && [ "$(cat "$DIR/.pom-sha256")" = "$want" ] \
    && compgen -G "$DIR/kafka_2.13-*.jar" >/dev/null
}

if cached; then
  echo "$DIR"
  exit 0
fi

command -v "$MVN" >/dev/null 2>&1 \
  || die "$MVN (Apache Maven) not found on PATH and $DIR holds no jars for this pom: install Maven (Debian 12: apt-get install maven) or point SLUICE_KAFKA_JARS at a filled cache"

parent="$(dirname "$DIR")"
mkdir -p "$parent"
exec 9>"$DIR.lock"
flock 9
# Another run may have filled the cache while we waited for the lock.
if cached; then
  echo "$DIR"
  exit 0
fi

tmp="$(mktemp -d "$DIR.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-jars: resolving $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:org.apache.kafka\:kafka_2.13\:\1:p' "$POM") and its dependencies into $DIR" >&2
t0=$SECONDS
if ! "$MVN" -q -B -Dstyle.color=never "${MVN_EXTRA[@]}" -f "$POM" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
      </dev/null >"$tmp/.mvn.log" 2>&1; then
  cat "$tmp/.mvn.log" >&2
  die "Maven could not resolve the Kafka jars (log above); is Maven Central (https://repo.maven.apache.org) reachable?"
fi
compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "Maven succeeded but no kafka_2.13 jar is in $tmp"
rm -f "$tmp/.mvn.log"
echo "$want" >"$tmp/.pom-sha256"
n="$(find "$tmp" -maxdepth 1 -name '*.jar' | wc -l)"
rm -rf "$DIR"
mv "$tmp" "$DIR"
trap - EXIT
echo "fetch-jars: $n jars in $DIR ($((SECONDS - t0)) s)" >&2
echo "$DIR"
