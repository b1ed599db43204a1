#!/usr/bin/env bash
# Builds local stand-ins for the public base images that docker/*.Dockerfile and
# compose/docker-compose.yaml name, for machines that can reach Debian's package archive,
# crates.io and PyPI but no container registry.
#
#   docker/base-images.sh            make every stand-in the files need (skips fresh ones)
#   docker/base-images.sh --list     print the image references found in the files
#   docker/base-images.sh IMAGE...   make only these (e.g. postgres:15)
#   FORCE=1 docker/base-images.sh    rebuild even when the cache is fresh
#
# On a machine that can reach the registries this does nothing but pull what is missing: an
# image already present without a stand-in label (a real one) is kept, and a missing one is
# pulled first (STANDIN_PULL=0 skips that). Only an image that cannot be had is made locally.
#
# Each stand-in is made from Debian bookworm packages (debootstrap, then `apt-get` in a chroot,
# then `docker import`) and carries the label org.apm-tutorial.recipe=<sha256 of its recipe>.
# A stand-in whose label matches its recipe is reused; a stale one is rebuilt, so a stale image
# is never used. STANDIN_KEEP_FOREIGN=0 replaces real images with stand-ins too.
#
# Needs: docker; to make stand-ins also root, debootstrap (installed with apt-get when missing),
# sha256sum.
# Env: DEBIAN_MIRROR (default: the host's apt mirror, else http://deb.debian.org/debian),
#      CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt; copied into the images that download
#      over HTTPS: the Rust builder and the test agent).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LABEL_KEY="org.apm-tutorial.recipe"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
export DOCKER_BUILDKIT=0 # the metadata step below needs no BuildKit; buildx may be absent

log() { printf '[base-images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Which images do the files name?
# ---------------------------------------------------------------------------------------------
referenced_images() {
  {
    # FROM lines of the Dockerfiles (stage names are skipped below)
    sed -n -E 's/^[[:space:]]*FROM[[:space:]]+(--platform=[^[:space:]]+[[:space:]]+)?([^[:space:]]+).*/\2/Ip' \
      "$ROOT"/docker/*.Dockerfile
    # image: lines of the compose file; ${VAR:-default} resolves to its default
    sed -n -E 's/^[[:space:]]*image:[[:space:]]*["'\'']?([^"'\''[:space:]]+).*/\1/p' \
      "$ROOT"/compose/docker-compose.yaml |
      sed -E 's/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/\1/g'
  } | awk '!seen[$0]++' | while read -r img; do
    # skip build-stage names (no ':' and no '/'), our own built images, and the Datadog Agent
    case "$img" in
      *:* | */*) ;;
      *) continue ;;
    esac
    case "$img" in
      apm-tutorial-rust/*) continue ;;      # built by compose from docker/*.Dockerfile
      gcr.io/datadoghq/agent:*) continue ;; # only under profile `datadog`; cannot be made locally
    esac
    printf '%s\n' "$img"
  done
}

# ---------------------------------------------------------------------------------------------
# Helpers used by the recipes (their text is part of every recipe hash)
# ---------------------------------------------------------------------------------------------
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m="$(grep -h -E '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1 || true)"
  [[ -z "$m" ]] && m="$(grep -h -E '^deb .*debian/? bookworm' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | head -n1 || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

MOUNTS=()
TMPDIRS=()
cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  for d in "${TMPDIRS[@]}"; do rm -rf --one-file-system "$d"; done
}
trap cleanup EXIT

new_rootfs_dir() {
  local d
  d="$(mktemp -d /var/tmp/apm-standin.XXXXXX)"
  TMPDIRS+=("$d")
  chmod 755 "$d" # becomes the image's / : must be traversable by every user
  echo "$d"
}

# Unpacks an existing image into a fresh directory.
rootfs_from_image() {
  local image=$1 dir cid
  dir="$(new_rootfs_dir)"
  cid="$(docker create "$image" /bin/true)"
  docker export "$cid" | tar -C "$dir" -x
  docker rm "$cid" >/dev/null
  echo "$dir"
}

chroot_enter() {
  local root=$1
  mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc")
  mkdir -p "$root/dev" && mount --rbind /dev "$root/dev" && MOUNTS+=("$root/dev")
  mount --make-rslave "$root/dev"
  rm -f "$root/etc/resolv.conf" && cp /etc/resolv.conf "$root/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d"
}

chroot_leave() {
  local root=$1
  umount -l "$root/dev" "$root/proc"
  MOUNTS=()
  rm -f "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
}

in_chroot() {
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}

apt_install() {
  local root=$1
  shift
  in_chroot "$root" apt-get update -qq
  in_chroot "$root" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  in_chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/*
}

# Imports a rootfs directory as TAG, then applies Dockerfile metadata read from stdin
# (ENV, CMD, ENTRYPOINT, STOPSIGNAL, ...) with a build that runs nothing.
import_rootfs() {
  local root=$1 tag=$2 hash=$3 tmp
  tmp="apm-standin-import:$hash"
  rm -rf "${root:?}/tmp/"* "$root/var/cache/debconf/"*-old "$root/var/log/"*.log 2>/dev/null || true
  tar --numeric-owner -C "$root" -c . | docker import - "$tmp" >/dev/null
  {
    echo "FROM $tmp"
    cat
    echo "LABEL $LABEL_KEY=\"$hash\""
  } | docker build -q -t "$tag" - >"$root.build.log" 2>&1 || { cat "$root.build.log" >&2; return 1; }
  rm -f "$root.build.log"
  docker rmi "$tmp" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Recipes. Each is called as: recipe_X TAG HASH, and must leave TAG built with the label.
# ---------------------------------------------------------------------------------------------

# debian:bookworm-slim: minbase bookworm with updates and security, docs and locales excluded as
# in the official slim image.
recipe_debian_slim() {
  local tag=$1 hash=$2 root mirror
  root="$(new_rootfs_dir)"
  mirror="$(debian_mirror)"
  log "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  chroot_enter "$root"
  in_chroot "$root" apt-get update -qq
  in_chroot "$root" apt-get -y -qq upgrade >/dev/null
  in_chroot "$root" apt-get clean
  chroot_leave "$root"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/*/[!c]* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/[!l]*
  import_rootfs "$root" "$tag" "$hash" <<'EOF'
CMD ["bash"]
EOF
}

# rust:<version>-slim-bookworm: bookworm slim + gcc/libc6-dev/ca-certificates + this host's
# rustup-managed toolchain (rustup cannot download here), laid out as in the official image.
recipe_rust() {
  local tag=$1 hash=$2 root sysroot tcname
  root="$(rootfs_from_image debian:bookworm-slim)"
  chroot_enter "$root"
  apt_install "$root" ca-certificates gcc libc6-dev
  chroot_leave "$root"
  cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  sysroot="$(rustc --print sysroot)"
  [[ "$(rustc -vV | sed -n 's/^release: //p')" == "$(echo "${tag#rust:}" | grep -o '^[0-9.]*')"* ]] ||
    log "warning: $tag gets this host's $(rustc --version)"
  tcname="$(rustc -vV | sed -n 's/^release: //p')-$(rustc -vV | sed -n 's/^host: //p')"
  log "copying toolchain $sysroot as $tcname"
  mkdir -p "$root/usr/local/rustup/toolchains/$tcname" "$root/usr/local/cargo/bin"
  tar -C "$sysroot" -c --exclude=./share/doc --exclude=./share/man . |
    tar -C "$root/usr/local/rustup/toolchains/$tcname" -x
  for b in "$root/usr/local/rustup/toolchains/$tcname/bin/"*; do
    ln -s "/usr/local/rustup/toolchains/$tcname/bin/$(basename "$b")" "$root/usr/local/cargo/bin/$(basename "$b")"
  done
  printf 'default_toolchain = "%s"\n' "$tcname" >"$root/usr/local/rustup/settings.toml"
  chmod -R a+rX "$root/usr/local/rustup" && chmod -R a+rwX "$root/usr/local/cargo"
  import_rootfs "$root" "$tag" "$hash" <<EOF
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=$(rustc -vV | sed -n 's/^release: //p')
CMD ["bash"]
EOF
}

# postgres:<major>: Debian's postgresql-<major> with an entrypoint honouring the official image's
# variables (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_ARGS, PGDATA, /docker-entrypoint-initdb.d), running the server as `postgres`.
recipe_postgres() {
  local tag=$1 hash=$2 root major
  major="${tag#*:}"
  major="${major%%[.-]*}"
  root="$(rootfs_from_image debian:bookworm-slim)"
  mkdir -p "$root/etc/postgresql-common"
  echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.conf"
  chroot_enter "$root"
  apt_install "$root" "postgresql-$major"
  chroot_leave "$root"
  mkdir -p "$root/var/run/postgresql" "$root/var/lib/postgresql/data" "$root/docker-entrypoint-initdb.d"
  in_chroot "$root" chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql
  chmod 3777 "$root/var/run/postgresql"
  chmod 1777 "$root/var/lib/postgresql/data"
  # listen on every address, as the official image's postgresql.conf.sample does
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" \
    "$root/usr/share/postgresql/$major/postgresql.conf.sample"
  grep -q "^listen_addresses = '\*'" "$root/usr/share/postgresql/$major/postgresql.conf.sample"
  standin_postgres_entrypoint >"$root/usr/local/bin/docker-entrypoint.sh"
  chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
  import_rootfs "$root" "$tag" "$hash" <<EOF
ENV PG_MAJOR=$major LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
}

standin_postgres_entrypoint() {
  cat <<'EOF'
#!/usr/bin/env bash
# Stand-in for the official postgres image's entrypoint (same variables, simpler).
set -Eeo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql && chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi
if [ "$1" = 'postgres' ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != 'trust' ]; then
    echo >&2 'Error: Database is uninitialized and superuser password is not specified.'
    echo >&2 '       Set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust.'
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" ${POSTGRES_PASSWORD:+--pwfile="$pwfile"} \
    ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
  rm -f "$pwfile"
  [ -n "$auth" ] || auth="$(postgres -C password_encryption -D "$PGDATA" 2>/dev/null || echo scram-sha-256)"
  [ "$auth" != 'trust' ] || echo >&2 'Warning: POSTGRES_HOST_AUTH_METHOD=trust lets anyone connect without a password.'
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [ "$POSTGRES_DB" != 'postgres' ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) [ -e "$f" ] && echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'PostgreSQL init process complete; ready for start up.'
fi
exec "$@"
EOF
}

# ghcr.io/datadog/dd-apm-test-agent/ddapm-test-agent:v<version>: bookworm + python3 + the
# ddapm-test-agent package of that version from PyPI, with the real image's environment.
recipe_testagent() {
  local tag=$1 hash=$2 root version
  version="${tag##*:}"
  version="${version#v}"
  root="$(rootfs_from_image debian:bookworm-slim)"
  chroot_enter "$root"
  apt_install "$root" ca-certificates python3 python3-venv
  cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  in_chroot "$root" python3 -m venv /opt/ddapm-test-agent
  in_chroot "$root" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 /opt/ddapm-test-agent/bin/pip install -q --no-cache-dir \
    "ddapm-test-agent==$version"
  chroot_leave "$root"
  mkdir -p "$root/snapshots" "$root/vcr-cassettes" "$root/src"
  import_rootfs "$root" "$tag" "$hash" <<'EOF'
ENV PATH=/opt/ddapm-test-agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOST=0.0.0.0 SNAPSHOT_CI=1 LOG_LEVEL=INFO SNAPSHOT_DIR=/snapshots \
    VCR_CASSETTES_DIRECTORY=/vcr-cassettes
WORKDIR /src
EXPOSE 8126
CMD ["ddapm-test-agent"]
EOF
}

# ---------------------------------------------------------------------------------------------
# Dispatch and cache
# ---------------------------------------------------------------------------------------------
recipe_for() {
  case "$1" in
    debian:bookworm-slim) echo recipe_debian_slim ;;
    rust:*bookworm*) echo recipe_rust ;;
    postgres:*) echo recipe_postgres ;;
    ghcr.io/datadog/dd-apm-test-agent/ddapm-test-agent:v*) echo recipe_testagent ;;
    *) return 1 ;;
  esac
}

# The images a stand-in is made from (they are made first; their hash is part of its hash).
deps_of() {
  case "$1" in
    debian:bookworm-slim) ;;
    *) echo debian:bookworm-slim ;;
  esac
}

image_label() {
  docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$1" 2>/dev/null || true
}

declare -A HASHES=()
recipe_hash() {
  local img=$1 fn dep extra=""
  [[ -n "${HASHES[$img]:-}" ]] && { echo "${HASHES[$img]}"; return; }
  fn="$(recipe_for "$img")"
  for dep in $(deps_of "$img"); do extra+="dep $dep $(recipe_hash "$dep")"$'\n'; done
  case "$fn" in
    recipe_rust) extra+="$(rustc -vV)"$'\n'"$(sha256sum "$CA_BUNDLE")" ;;
    recipe_testagent) extra+="$(sha256sum "$CA_BUNDLE")" ;;
    recipe_postgres) extra+="$(standin_postgres_entrypoint)" ;;
  esac
  HASHES[$img]="$({
    echo "$img"
    declare -f "$fn" debian_mirror chroot_enter chroot_leave in_chroot apt_install import_rootfs rootfs_from_image
    echo "$extra"
  } | sha256sum | cut -c1-32)"
  echo "${HASHES[$img]}"
}

declare -A BUILT=()
ensure() {
  local img=$1 fn hash have dep start old
  [[ -n "${BUILT[$img]:-}" ]] && return
  fn="$(recipe_for "$img")" || die "no stand-in recipe for image '$img'"
  for dep in $(deps_of "$img"); do ensure "$dep"; done
  hash="$(recipe_hash "$img")"
  have="$(image_label "$img")"
  if [[ "${FORCE:-0}" != 1 && "$have" == "$hash" ]]; then
    log "$img: cached ($hash)"
  elif [[ "${FORCE:-0}" != 1 && -z "$have" && "${STANDIN_KEEP_FOREIGN:-1}" == 1 ]] &&
    docker image inspect "$img" >/dev/null 2>&1; then
    log "$img: present without a stand-in label (a real image); kept"
  elif [[ "${FORCE:-0}" != 1 && -z "$have" && "${STANDIN_PULL:-1}" == 1 ]] &&
    timeout 120 docker pull -q "$img" >/dev/null 2>&1; then
    log "$img: pulled"
  else
    [[ $(id -u) == 0 ]] || die "$img cannot be pulled; making a stand-in needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || {
      log "installing debootstrap"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    start=$SECONDS
    old="$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)"
    log "$img: building stand-in ($fn, recipe $hash)"
    "$fn" "$img" "$hash"
    # drop the replaced image if nothing else refers to it (errors ignored: it may be in use)
    [[ -n "$old" ]] && docker rmi "$old" >/dev/null 2>&1 || true
    [[ "$(image_label "$img")" == "$hash" ]] || die "$img: recipe did not produce a labelled image"
    log "$img: built in $((SECONDS - start))s"
  fi
  BUILT[$img]=1
}

main() {
  [[ "${1:-}" == "--list" ]] && { referenced_images; return; }
  command -v docker >/dev/null || die "docker not found"
  local images=("$@")
  ((${#images[@]})) || mapfile -t images < <(referenced_images)
  ((${#images[@]})) || die "no images found in docker/*.Dockerfile or compose/docker-compose.yaml"
  for img in "${images[@]}"; do ensure "$img"; done
}

main "$@"
