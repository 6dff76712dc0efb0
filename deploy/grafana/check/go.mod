// The dashboard checker of deploy/grafana/check/run.py: Grafana's published dashboard schema as Go types.
module hookline/grafana-check

go 1.24.0

require github.com/grafana/grafana-foundation-sdk/go v0.0.22
