# netcli in a container: `docker build -t netcli . && docker run --rm -v $PWD/runs:/work/runs netcli train configs/mnist_cnn.yaml`
FROM python:3.11-slim
WORKDIR /work
COPY pyproject.toml README.md ./
COPY netcli ./netcli
COPY configs ./configs
RUN pip install --no-cache-dir .
ENV NETCLI_DATA=/data
VOLUME ["/data", "/work/runs"]
ENTRYPOINT ["netcli"]
CMD ["--help"]
