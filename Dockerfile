# One image for every role (public door, staff door, worker); the command picks the role:
# `exhibit serve --role public|staff`, `exhibit worker`. The default command runs both doors
# with the staff door on 127.0.0.1 inside the container (EXHIBIT_STAFF_HOST), so it is not
# reachable from outside unless an operator says so.
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
