# Shared setup for a fresh machine (Debian/Ubuntu or macOS). Sourced by run.sh and test.sh.
# Installs only what is missing, so a second run costs a few seconds.

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# System packages: a C toolchain for -sys crates, Python 3 with venv (the demo's environment is made from it),
# curl for rustup. On macOS: Xcode command line tools and python3 are expected (xcode-select --install).
ensure_system_packages() {
  case "$(uname -s)" in
    Linux)
      if command -v apt-get >/dev/null 2>&1; then
        # gnome-keyring + dbus: a real Secret Service for the keyring tests (dbus-run-session);
        # libdbus-1-dev: the keyring crate's Secret Service client links libdbus. wrk + nginx-light: the
        # proxy benchmark (cargo bench -p mlx-box --bench proxy).
        local want=(build-essential pkg-config curl ca-certificates python3 python3-venv python3-pip procps
                    libdbus-1-dev gnome-keyring dbus dbus-x11 wrk nginx-light)
        local missing=()
        for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
        if [ ${#missing[@]} -gt 0 ]; then
          say "installing ${missing[*]}"
          $SUDO apt-get update -qq
          DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
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
