#!/usr/bin/env bash
# Regenerate crds/*.yaml from the Rust types (src/crd): one file per CRD, named <plural>.<group>.yaml,
# each exactly the document `certgate crds` prints for it. tests/crds.rs fails when these files drift.
set -euo pipefail
cd "$(dirname "$0")/.."
CERTGATE_WRITE_CRDS=1 cargo test --quiet --test crds crds_directory_matches_generated_output
