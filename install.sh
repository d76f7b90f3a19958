#!/usr/bin/env bash
# Installs everything synapse-pipelines, its tests and its demo need, on a fresh machine:
#   - the Python package with its dev extras (CDK, cdk-nag, cfn-lint, moto, pytest, playwright)
#   - the pinned Node tools from package-lock.json (aws-cdk CLI, asl-validator)
#   - Debian's Chromium, for the report's headless-browser test (playwright drives it; it never
#     downloads a browser of its own)
set -euo pipefail
cd "$(dirname "$0")"

python -m pip install --disable-pip-version-check -q -e ".[dev]"
# the Lambda layer's wheels (.cache/lambda-wheels/): `cdk synth` then bundles it offline
python -m infra.tooling.wheelhouse --fill-wheelhouse

if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "install.sh: Chromium is missing and cannot be installed without root;" \
             "install Debian's 'chromium' package, or the browser tests will fail." >&2
    fi
fi
echo "synapse-pipelines installed: $(synapse-pipelines version)"
