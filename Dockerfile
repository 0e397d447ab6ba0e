# One image for every role (upload, reviewer, worker); the command picks the role.
# Not exercised by CI here: this machine has no Docker engine. `make test` covers the code.
FROM debian:12-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ffmpeg clamav-daemon ca-certificates make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN scripts/bootstrap.sh run && useradd --system --home /var/lib/exhibit exhibit \
    && install -d -o exhibit /var/lib/exhibit
USER exhibit
ENV EXHIBIT_DATA_DIR=/var/lib/exhibit PATH=/app/.venv/bin:$PATH
EXPOSE 8000
CMD ["exhibit", "serve", "--host", "0.0.0.0"]
