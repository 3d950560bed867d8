# netcli in a container; the README's "Docker" section shows its use:
#   docker build -t netcli .
#   docker run --rm --user "$(id -u):$(id -g)" -v netcli-data:/data -v "$PWD":/project netcli train configs/mnist_cnn.yaml
# BASE: an image with Python >= 3.10 whose `pip` installs into the Python on PATH
# (tests/test_docker.py builds on one made from Debian where Docker Hub is out of reach: .ci/docker-base).
ARG BASE=python:3.11-slim
FROM ${BASE}
COPY pyproject.toml README.md /opt/netcli/
COPY netcli /opt/netcli/netcli
RUN pip install --no-cache-dir --disable-pip-version-check /opt/netcli
# the shipped configs, for `netcli train /opt/netcli/configs/NAME.yaml` from any folder
COPY configs /opt/netcli/configs
# /data: the data cache (mount a volume there to keep it); /home/netcli: HOME for any --user (pip's cache)
RUN mkdir -m 1777 /data /home/netcli /project
ENV NETCLI_DATA=/data HOME=/home/netcli
# the user's folder, mounted with -v "$PWD":/project: configs and data read from it, runs/ written to it
WORKDIR /project
ENTRYPOINT ["netcli"]
CMD ["--help"]
