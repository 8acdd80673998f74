# Homebrew formula for the mlx-box CLI and daemon, built from the release's source tarball
# (mlx-box-VERSION.tar.gz, made by scripts/release.sh). The release host is not settled yet: the url below
# is where a GitHub release would put it, and the sha256 is a placeholder; scripts/release.sh writes a copy
# with the url (MLXBOX_RELEASE_URL) and sha256 of the tarball it made to <out>/homebrew/mlx-box.rb.
# Checked without Homebrew by crates/cli/tests/packaging.rs (packaging/homebrew/check.rb).
class MlxBox < Formula
  desc "Supervise local LLM servers (mlx_lm.server and others) from one settings.toml"
  homepage "https://github.com/mlx-box/mlx-box"
  url "https://github.com/mlx-box/mlx-box/releases/download/v0.1.0/mlx-box-0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "MIT"

  depends_on "rust" => :build
  # The demo profile and the servers' environments are made with a Python >= 3.10 (macOS's own is 3.9).
  depends_on "python@3.12"

  on_linux do
    # The keyring crate talks to the Secret Service through libdbus.
    depends_on "pkgconf" => :build
    depends_on "dbus"
  end

  def install
    system "cargo", "install", *std_cargo_args(path: "crates/cli")
    pkgshare.install "config/settings.toml.example"
  end

  def caveats
    <<~EOS
      Your settings: ~/Library/Application Support/mlx-box/settings.toml (an example is in
      #{opt_pkgshare}/settings.toml.example). Without one, `mlx-box up` runs the demo profile.
      `brew services start mlx-box` runs the daemon at login and after a crash; `mlx-box down` stops it
      and its servers until the next start.
    EOS
  end

  service do
    run [opt_bin/"mlx-box", "up"]
    # Restarted after a crash, not after `mlx-box down` (a clean exit), as `mlx-box service install` does.
    keep_alive successful_exit: false
    process_type :interactive
    environment_variables PATH: std_service_path_env
    log_path var/"log/mlx-box.log"
    error_log_path var/"log/mlx-box.log"
  end

  test do
    assert_match "mlx-box #{version}", shell_output("#{bin}/mlx-box --version")
    (testpath/"settings.toml").write <<~TOML
      [services.echo]
      kind = "command"
      port = 18080
      command = ["python3", "-m", "http.server", "{port}"]
    TOML
    assert_match "valid: 1 launchable service", shell_output("#{bin}/mlx-box validate #{testpath}/settings.toml 2>&1")
    # A bad value is named with its file, line and column, and the exit status is 2.
    bad = (testpath/"settings.toml").read.sub("port = 18080", "port = 99999")
    (testpath/"bad.toml").write bad
    assert_match "bad.toml:3:8: error", shell_output("#{bin}/mlx-box validate #{testpath}/bad.toml 2>&1", 2)
  end
end
