# Airflow image for envsync: the official Airflow 3.3.2 image plus envsync's locked dependencies and code.
# Used by docker-compose.yaml (`build: .`). The base image already ships the Celery and Redis providers
# that the CeleryExecutor in docker-compose.yaml needs.
FROM apache/airflow:3.3.2-python3.11

USER airflow
COPY --chown=airflow:0 requirements.txt /tmp/envsync-requirements.txt
# The hashed lock pins apache-airflow==3.3.2 itself, so pip cannot swap out the base image's Airflow.
RUN pip install --no-cache-dir --require-hashes -r /tmp/envsync-requirements.txt

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 sql/ /opt/airflow/sql/
COPY --chown=airflow:0 config/ /opt/airflow/config/

ENV ENVSYNC_CONFIG=/opt/airflow/config/envsync.yaml
