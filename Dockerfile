# Airflow image for envsync, built from the release bundle (`make bundle`: dist/envsync-<version>.tar.gz,
# see plugins/envsync/deploy/bundle.py), never from the working tree: the official Airflow 3.3.2 image plus
# the bundle's hashed lock and its DAGs, package, SQL and demo config under /opt/envsync. Build and tag:
#
#   make bundle && docker build --build-arg BUNDLE=dist/envsync-<version>.tar.gz --build-arg VERSION=<version> -t envsync-airflow:<version> .
#
# (a Docker tag cannot hold `+`: tag a 0.0.0+g<sha> version with `-` in its place). docker-compose.yaml
# builds it the same way (ENVSYNC_BUNDLE, ENVSYNC_VERSION). The base image already ships the Celery and
# Redis providers that the CeleryExecutor in docker-compose.yaml needs.

# Stage 1: unpack the bundle and verify it against its MANIFEST.json. A separate stage so that the final
# image copies the lock file on its own first: pip's layer stays cached while only code changes.
FROM apache/airflow:3.3.2-python3.11 AS bundle
# The bundle's path inside the build context (.dockerignore lets dist/ in).
ARG BUNDLE
USER root
RUN test -n "${BUNDLE:-}" \
    || { echo "pass --build-arg BUNDLE=dist/envsync-<version>.tar.gz (make bundle builds it)" >&2; exit 1; }
COPY ${BUNDLE} /tmp/envsync.tar.gz
# Extract, then check every file against MANIFEST.json (sha256 of each listed file, nothing missing,
# nothing unlisted) with the image's own python; the build fails naming the first bad file. Then:
# - dags/.airflowignore hides dags/envsync_dags.py, the loader of Cloud Composer buckets, which has no
#   place in an image. The line is a valid pattern under both [core] dag_ignore_file_syntax values (glob,
#   Airflow 3's default, and regexp), and is appended so that ignore lines the bundle ships are kept.
# - the config template becomes the image's config (the demo config): users mount their own over it.
RUN mkdir /opt/envsync \
    && tar -xzf /tmp/envsync.tar.gz -C /opt/envsync --no-same-owner \
    && python -c "import hashlib, json, pathlib, sys; \
root = pathlib.Path(sys.argv[1]); \
manifest = json.loads((root / 'MANIFEST.json').read_bytes()); \
version, digest, listed = manifest['version'], manifest['digest'], manifest['files']; \
found = {p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file()} - {'MANIFEST.json'}; \
actual = {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in found}; \
bad = [f for f in sorted(set(listed) | found) if actual.get(f) != listed.get(f)]; \
why = 'is missing' if bad and bad[0] not in found else 'is not listed in MANIFEST.json' if bad and bad[0] not in listed else 'has a sha256 other than the one MANIFEST.json lists'; \
sys.exit(f'bundle verification failed: {bad[0]} {why} ({len(bad)} bad file(s) in all)') if bad else print(f'bundle verified: envsync {version}, {len(listed)} files, digest {digest}')" \
    /opt/envsync \
    && printf '%s\n' 'envsync_dags.py' >> /opt/envsync/dags/.airflowignore \
    && cp /opt/envsync/data/envsync/config/envsync.yaml.template /opt/envsync/data/envsync/config/envsync.yaml

# Stage 2: the image.
FROM apache/airflow:3.3.2-python3.11
ARG VERSION=dev
LABEL org.opencontainers.image.title="envsync-airflow" \
      org.opencontainers.image.version="${VERSION}"

USER airflow
COPY --from=bundle --chown=airflow:0 /opt/envsync/requirements.txt /opt/envsync/requirements.txt
# The hashed lock pins apache-airflow==3.3.2 itself, so pip cannot swap out the base image's Airflow.
RUN pip install --no-cache-dir --require-hashes -r /opt/envsync/requirements.txt
COPY --from=bundle --chown=airflow:0 /opt/envsync/ /opt/envsync/

# Airflow reads its DAGs and plugins from the bundle; envsync finds its SQL, seeds, migrations and config
# there (plugins/envsync/core/paths.py).
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/envsync/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/envsync/plugins \
    ENVSYNC_HOME=/opt/envsync/data/envsync \
    ENVSYNC_CONFIG=/opt/envsync/data/envsync/config/envsync.yaml
