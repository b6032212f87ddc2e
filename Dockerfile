# One image for the master, the scheduler and the agent of a production
# farm (see docker-compose.yml). Build: docker build -t pyfarm .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/pyfarm
COPY pyfarm-core pyfarm-core
COPY pyfarm-master pyfarm-master
COPY pyfarm-agent pyfarm-agent
RUN pip install ./pyfarm-core ./pyfarm-master ./pyfarm-agent \
    && useradd --create-home --uid 1000 pyfarm \
    && mkdir -p /var/lib/pyfarm && chown pyfarm /var/lib/pyfarm
USER pyfarm
ENV PYFARM_DATA_DIR=/var/lib/pyfarm/master \
    PYFARM_AGENT_DATA_DIR=/var/lib/pyfarm/agent
EXPOSE 5000
CMD ["pyfarm-master", "serve", "--host", "0.0.0.0", "--port", "5000"]
