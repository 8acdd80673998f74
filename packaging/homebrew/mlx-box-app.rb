# Homebrew cask for the mlx-box menu-bar app: the .dmg scripts/release.sh makes on a Mac (a universal
# aarch64 + x86_64 build when both rustup targets are installed). The app carries its daemon
# (Contents/MacOS/mlx-box), which `binary` links as the `mlx-box` CLI. The release host is not settled yet:
# the url below is where a GitHub release would put it, and the sha256 is a placeholder; scripts/release.sh
# writes a copy with the url (MLXBOX_RELEASE_URL) and sha256 of the .dmg it made to
# <out>/homebrew/mlx-box-app.rb. Checked without Homebrew by crates/cli/tests/packaging.rs
# (packaging/homebrew/check.rb).
cask "mlx-box-app" do
  version "0.1.0"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"

  url "https://github.com/mlx-box/mlx-box/releases/download/v#{version}/mlx-box_#{version}_universal.dmg"
  name "mlx-box"
  desc "Menu-bar app that supervises local LLM servers"
  homepage "https://github.com/mlx-box/mlx-box"

  # src-tauri/tauri.conf.json: bundle.macOS.minimumSystemVersion 13.0.
  depends_on macos: ">= :ventura"
  conflicts_with formula: "mlx-box"

  app "mlx-box.app"
  binary "#{appdir}/mlx-box.app/Contents/MacOS/mlx-box"

  # The daemon's login agent (`mlx-box service install`, the menu's Launch at login) and the app's own.
  uninstall quit:      "dev.mlx-box.app",
            launchctl: ["com.mlx-box.daemon", "mlx-box"]

  zap trash: [
    "~/Library/Application Support/mlx-box",
    "~/Library/Caches/dev.mlx-box.app",
    "~/Library/Caches/mlx-box",
    "~/Library/Preferences/dev.mlx-box.app.plist",
    "~/Library/Saved Application State/dev.mlx-box.app.savedState",
    "~/Library/WebKit/dev.mlx-box.app",
  ]

  caveats <<~EOS
    mlx-box lives in the menu bar (no Dock icon). It starts its daemon, the mlx-box beside it in the app,
    which runs ~/Library/Application Support/mlx-box/settings.toml, or the demo profile when there is none.
    Model servers keep running when the app quits: `mlx-box down` stops them.
  EOS
end
