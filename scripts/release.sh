#!/usr/bin/env bash
# Builds a release of mlx-box for this machine's platform, into target/dist (or --out DIR):
#
# - the release binaries, `mlx-box` (the CLI and daemon) and `mlx-box-app` (the menu-bar app);
# - the app's bundles, each carrying the daemon beside the app (tauri.conf.json's `bundle.externalBin`):
#   on Linux the `.deb` (/usr/bin/mlx-box-app and /usr/bin/mlx-box); on macOS the `.app`
#   (Contents/MacOS/mlx-box beside the app) and its `.dmg`, a universal aarch64 + x86_64 build when both
#   rustup targets are installed (`rustup target add aarch64-apple-darwin x86_64-apple-darwin`);
# - mlx-box-VERSION-TRIPLE.tar.gz, the CLI alone, and mlx-box-VERSION.tar.gz, the source of the commit
#   (what the Homebrew formula builds);
# - SHA256SUMS of all of them; then it prints what it made, with sizes.
#
# It downloads no toolchain: the tauri CLI comes from npm (package-lock.json), everything else is the
# machine's (no AppImage: its bundler fetches tools from GitHub at build time).
#
#   scripts/release.sh           the release profile (fat LTO: ~15 min on a 2-core machine)
#   scripts/release.sh --quick   the release profile without fat LTO (codegen-units 16): for trying the
#                                packaging, not for shipping
#   scripts/release.sh --debug   the debug build as it is (what scripts/test.sh builds; the front end is
#                                built only when ui/dist is missing): the .deb test uses it
#   --out DIR                    where the artifacts go (default: <cargo target dir>/dist)
set -euo pipefail
# (bash 3.2, macOS's own, is enough: an empty array is expanded as ${a[@]+"${a[@]}"} under set -u.)
cd "$(dirname "$0")/.."
. scripts/setup.sh

mode=release
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --debug) mode=debug ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) say "release.sh: unknown argument $1 (see --help)"; exit 2 ;;
  esac
  shift
done

die() { say "release.sh: $*"; exit 1; }

ensure_system_packages
ensure_rust
ensure_app_packages

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"
host=$(rustc -vV | sed -n 's/^host: //p')
tdir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out="${out:-$tdir/dist}"

case "$(uname -s)" in
  Linux) os=linux; bundles=deb ;;
  Darwin) os=macos; bundles=app,dmg ;;
  *) die "no bundle for $(uname -s): Linux (.deb) and macOS (.app, .dmg) only" ;;
esac

# What cargo builds: the host's triple, or on a Mac with both targets installed, both (made universal).
targets=()
triple="$host"
if [ "$os" = macos ] && rustup target list --installed 2>/dev/null | grep -qx aarch64-apple-darwin \
  && rustup target list --installed 2>/dev/null | grep -qx x86_64-apple-darwin; then
  targets=(aarch64-apple-darwin x86_64-apple-darwin)
  triple=universal-apple-darwin
fi

profile_args=(--release)
profile=release
tauri_args=()
case "$mode" in
  debug) profile_args=(); profile=debug; tauri_args=(--debug) ;;
  quick) export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 ;;
esac

# The front end is compiled into the app. The debug mode bundles the build as it is, so it rebuilds the
# front end only when there is none (a new ui/dist recompiles the app).
if [ "$mode" = debug ] && [ -f ui/dist/index.html ]; then
  [ -x node_modules/.bin/tauri ] || ensure_npm_packages
else
  build_ui
fi

# 1. The binaries: both packages in one cargo invocation, so they share one feature resolution (the same
#    artifacts as scripts/test.sh's and run.sh's builds).
if [ ${#targets[@]} -eq 0 ]; then
  say "building mlx-box and mlx-box-app ($mode, $host)"
  cargo build ${profile_args[@]+"${profile_args[@]}"} -p mlx-box -p mlx-box-app
  bindir="$tdir/$profile"
else
  for t in "${targets[@]}"; do
    say "building mlx-box and mlx-box-app ($mode, $t)"
    cargo build ${profile_args[@]+"${profile_args[@]}"} --target "$t" -p mlx-box -p mlx-box-app
  done
  # What `tauri build --target universal-apple-darwin` does: one lipo'd binary per program, where
  # `tauri bundle` looks for them.
  bindir="$tdir/universal-apple-darwin/$profile"
  mkdir -p "$bindir"
  for b in mlx-box mlx-box-app; do
    lipo -create -output "$bindir/$b" "$tdir/${targets[0]}/$profile/$b" "$tdir/${targets[1]}/$profile/$b"
  done
  tauri_args+=(--target universal-apple-darwin)
fi

# 2. The bundle's daemon: tauri's bundler takes `bundle.externalBin` = binaries/mlx-box as
#    src-tauri/binaries/mlx-box-<triple> and refuses to bundle without it. The copy lives only while
#    this script bundles (a stale one must never go into a later `tauri build`).
sidecar="src-tauri/binaries/mlx-box-$triple"
[ -x "$bindir/mlx-box" ] || die "no daemon binary at $bindir/mlx-box: the bundle would ship without its daemon"
[ -x "$bindir/mlx-box-app" ] || die "no app binary at $bindir/mlx-box-app"
mkdir -p src-tauri/binaries
trap 'rm -f "$sidecar"' EXIT
cp "$bindir/mlx-box" "$sidecar"
chmod 0755 "$sidecar"

# 3. The bundles, from the binaries just built (`tauri bundle` builds nothing).
say "bundling: $bundles ($triple)"
rm -rf "$bindir/bundle"
npx --no-install tauri bundle --ci --bundles "$bundles" ${tauri_args[@]+"${tauri_args[@]}"}

# 4. The artifacts.
rm -rf "$out"
mkdir -p "$out"
shopt -s nullglob
made=()
case "$os" in
  linux)
    debs=("$bindir"/bundle/deb/*_"$version"_*.deb)
    [ ${#debs[@]} -eq 1 ] || die "expected one .deb in $bindir/bundle/deb, found ${#debs[@]}"
    cp "${debs[0]}" "$out/"
    made+=("$(basename "${debs[0]}")")
    ;;
  macos)
    app="$bindir/bundle/macos/mlx-box.app"
    [ -x "$app/Contents/MacOS/mlx-box" ] || die "$app has no Contents/MacOS/mlx-box"
    dmgs=("$bindir"/bundle/dmg/*_"$version"_*.dmg)
    [ ${#dmgs[@]} -eq 1 ] || die "expected one .dmg in $bindir/bundle/dmg, found ${#dmgs[@]}"
    cp "${dmgs[0]}" "$out/"
    made+=("$(basename "${dmgs[0]}")")
    ;;
esac
# The bundle's daemon is the one just built, byte for byte (the app finds it beside itself).
cli="mlx-box-$version-$triple"
mkdir -p "$out/$cli"
cp "$bindir/mlx-box" README.md config/settings.toml.example "$out/$cli/"
tar -C "$out" -czf "$out/$cli.tar.gz" "$cli"
rm -rf "${out:?}/$cli"
made+=("$cli.tar.gz")
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  say "note: the source tarball is the commit $(git rev-parse --short HEAD); uncommitted changes are not in it"
fi
git archive --format=tar.gz --prefix="mlx-box-$version/" -o "$out/mlx-box-$version.tar.gz" HEAD
made+=("mlx-box-$version.tar.gz")

sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
(cd "$out" && sha256 "${made[@]}" > SHA256SUMS)

# 5. Homebrew: the formula (and on a Mac the cask) with the url and sha256 of what was just made, checked
#    as crates/cli/tests/packaging.rs checks the committed ones (the formula's test block runs against
#    the binary built here). MLXBOX_RELEASE_URL: where the release's files will be downloaded from.
base="${MLXBOX_RELEASE_URL:-https://github.com/mlx-box/mlx-box/releases/download/v$version}"
mkdir -p "$out/homebrew"
src_sha=$(cd "$out" && sha256 "mlx-box-$version.tar.gz" | cut -d ' ' -f 1)
sed -e "s|^  url \".*\"|  url \"$base/mlx-box-$version.tar.gz\"|" -e "s|^  sha256 \".*\"|  sha256 \"$src_sha\"|" \
  packaging/homebrew/mlx-box.rb > "$out/homebrew/mlx-box.rb"
check_args=(--formula "$out/homebrew/mlx-box.rb" --bin "$bindir")
if [ "$os" = macos ]; then
  dmg=$(basename "${dmgs[0]}")
  dmg_sha=$(cd "$out" && sha256 "$dmg" | cut -d ' ' -f 1)
  tpl='#{version}'  # Ruby's interpolation in the cask: the url follows its `version`
  base_tpl=${base//$version/$tpl}
  sed -e "s|^  version \".*\"|  version \"$version\"|" -e "s|^  sha256 \".*\"|  sha256 \"$dmg_sha\"|" \
    -e "s|^  url \".*\"|  url \"$base_tpl/${dmg//$version/$tpl}\"|" \
    packaging/homebrew/mlx-box-app.rb > "$out/homebrew/mlx-box-app.rb"
  check_args+=(--cask "$out/homebrew/mlx-box-app.rb")
fi
if command -v ruby >/dev/null 2>&1; then
  ruby packaging/homebrew/check.rb "${check_args[@]}" >/dev/null || {
    ruby packaging/homebrew/check.rb "${check_args[@]}"; die "the Homebrew files written to $out/homebrew fail their check"; }
else
  say "note: no ruby here, so $out/homebrew is not checked (scripts/setup.sh installs ruby)"
fi

say "made ($mode build, $triple) in $out:"
for f in "${made[@]}" SHA256SUMS; do
  bytes=$(wc -c < "$out/$f")
  awk -v b="$bytes" -v f="$f" 'BEGIN { if (b < 1048576) printf "  %-48s %9.1f kB\n", f, b / 1024;
    else printf "  %-48s %9.1f MB\n", f, b / 1048576 }'
done
for f in "$out"/homebrew/*.rb; do echo "  homebrew/$(basename "$f") (url and sha256 of the above)"; done
if [ "$os" = macos ]; then
  app_bytes=$(du -sk "$app" | cut -f1)
  awk -v k="$app_bytes" -v f="$app" 'BEGIN { printf "  %s (%.1f MB, not copied)\n", f, k / 1024 }'
fi
if [ "$mode" != release ]; then
  say "a $mode build: for trying the packaging, not for shipping"
fi
