# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/updraft ./cmd/updraft

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/updraft /usr/local/bin/updraft
VOLUME /data
ENV UPDRAFT_DATA=/data
EXPOSE 8080 8090
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/updraft"]
# Listen on all interfaces inside the container; publish the ports you need.
CMD ["serve", "--edge-listen", "0.0.0.0:8080", "--origin-listen", "0.0.0.0:8090"]
