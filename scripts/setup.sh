# Shared setup for a fresh machine (Debian/Ubuntu or macOS). Sourced by run.sh and test.sh.
# Installs only what is missing, so a second run costs a few seconds.

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages among "$@" that are missing (one apt-get update, only when needed).
apt_ensure() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# System packages: a C toolchain for -sys crates, Python 3 with venv (the demo's environment is made from it),
# curl for rustup. On macOS: Xcode command line tools and python3 are expected (xcode-select --install).
ensure_system_packages() {
  case "$(uname -s)" in
    Linux)
      if command -v apt-get >/dev/null 2>&1; then
        # gnome-keyring + dbus: a real Secret Service for the keyring tests (dbus-run-session);
        # libdbus-1-dev: the keyring crate's Secret Service client links libdbus. wrk + nginx-light: the
        # proxy benchmark (cargo bench -p mlx-box --bench proxy). prometheus: its promtool checks the
        # /metrics exposition, and tests/prometheus.rs runs its server (its own, on a free loopback port);
        # the server the package may start as a system service is not wanted here. iproute2: `ip netns`
        # for the two-host tests (tests/fleet.rs, as root). python3-dbusmock: logind's stand-in on a private
        # system bus (dbus-daemon), for the lock against sleep (tests/power.rs); Debian's package brings its
        # dbus and gi bindings built (pip would compile dbus-python against libdbus and glib). systemd: its
        # systemd-analyze verifies the units `mlx-box service install` writes. ruby: checks the Homebrew
        # formula and cask (tests/packaging.rs: `ruby -c`, then each file against a stand-in of its DSL).
        apt_ensure build-essential pkg-config curl ca-certificates python3 python3-venv python3-pip procps git \
          libdbus-1-dev gnome-keyring dbus dbus-x11 wrk nginx-light prometheus iproute2 python3-dbusmock systemd ruby
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
          $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
      fi
      ;;
    Darwin)
      command -v python3 >/dev/null 2>&1 || { say "python3 is missing: run 'xcode-select --install' (or install Python 3.11+)"; exit 1; }
      ;;
  esac
}

# Rust: the machine's toolchain when there is one, else rustup.
ensure_rust() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if ! command -v cargo >/dev/null 2>&1; then
    say "installing Rust (rustup)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
  fi
}

# The menu-bar app (Tauri 2): WebKitGTK and friends to build it on Linux; Node.js for its front end.
# On macOS the system WebView is used and only Node.js is needed.
ensure_app_packages() {
  if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null 2>&1; then
    apt_ensure libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev \
      libgtk-3-dev
  fi
  ensure_node
}

# Node.js >= 20 (Vite 7). Debian's nodejs is older: then NodeSource is not reachable here, so we stop with
# a clear message rather than fail later inside npm.
ensure_node() {
  if ! command -v node >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then apt_ensure nodejs npm; fi
  fi
  if ! command -v node >/dev/null 2>&1; then
    say "Node.js is missing: install Node 20 or newer (https://nodejs.org or 'brew install node')"; exit 1
  fi
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then say "Node.js $major is too old: the front end needs Node 20 or newer"; exit 1; fi
}

# End-to-end tests of the real app: a virtual display, a D-Bus session, WebKitWebDriver and tauri-driver.
ensure_e2e_packages() {
  apt_ensure xvfb xauth dbus dbus-x11 webkit2gtk-driver
  if ! command -v tauri-driver >/dev/null 2>&1; then
    say "installing tauri-driver (cargo install, ~2 min once)"
    cargo install tauri-driver --locked --quiet
  fi
}

# npm packages: exactly the lock file's (vite, svelte, the tauri CLI that makes the bundles…).
ensure_npm_packages() {
  # `npm ci` installs exactly the lock file; a registry mirror that serves only this platform's optional
  # packages (rollup's per-OS builds) makes it refuse the lock, so fall back to `npm install --no-save`,
  # which keeps the locked versions and leaves the lock file as it is.
  if ! npm ci --no-audit --no-fund --loglevel=error 2>/dev/null; then
    npm install --no-save --no-audit --no-fund --loglevel=error
  fi
}

# The front end: npm packages, then a production build into ui/dist, which the app embeds.
build_ui() {
  say "front end: npm packages + vite build"
  ensure_npm_packages
  npm run build --silent
}
