#!/usr/bin/env bash
# HF datatrove in its own environment (.venv-datatrove), for bench/dedup_peer.py only: the peer
# gapfill's near-duplicate filter is measured against. Never imported by gapfill.
# Pinned: datatrove 0.10.1's MinHash steps need these modules, which its own requirements
# leave out (JsonlReader: orjson; the English word tokenizer: spacy; tokenization: tokenizers;
# text utilities: regex); xxhash 4 no longer hashes str, which datatrove passes it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-datatrove/bin/python ]; then
  python3 -m venv .venv-datatrove
fi
.venv-datatrove/bin/pip install -q "datatrove==0.10.1" "orjson==3.13.0" "spacy==3.8.18" \
  "tokenizers==0.23.3" "regex==2026.12.2" "xxhash==3.8.2"
