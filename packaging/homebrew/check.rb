# frozen_string_literal: true

# (Ruby 2.6, macOS's own, is enough.)
# Checks the Homebrew formula and cask without Homebrew (this machine has none): each file is evaluated
# against a stand-in of the DSL Homebrew gives it, so a misspelt or unknown stanza fails as it would in
# Homebrew; then the fields Homebrew requires (what `brew audit --new` asks first) and what mlx-box needs of
# them (the app bundle's name and the daemon inside it, the service running `mlx-box up`, the state dir in
# `zap`) are checked. With --bin DIR the formula's `test do` block runs for real against DIR/mlx-box.
#
#   ruby packaging/homebrew/check.rb [--formula F] [--cask C] [--tauri-conf src-tauri/tauri.conf.json]
#                                    [--bin target/debug]
#
# Prints one line per problem and exits 1 when there is any; prints "ok" lines otherwise.

require "json"
require "open3"
require "optparse"
require "pathname"
require "tmpdir"

PROBLEMS = []
FORMULAE = []

def problem(msg)
  PROBLEMS << msg
end

SHA256 = /\A[0-9a-f]{64}\z/

# A stand-in of Homebrew's Formula: its class-level DSL records what the formula declares.
class Formula
  class << self
    attr_reader :fields, :deps, :service_block, :test_block

    def inherited(sub)
      super
      FORMULAE << sub
      sub.instance_variable_set(:@fields, {})
      sub.instance_variable_set(:@deps, [])
    end

    %i[desc homepage sha256 license version revision].each do |k|
      define_method(k) { |v| @fields[k] = v }
    end

    def url(value, **opts)
      @fields[:url] = [value, opts]
    end

    def head(value, **opts)
      @fields[:head] = [value, opts]
    end

    def depends_on(dep)
      @deps << dep
    end

    def uses_from_macos(dep, **_opts)
      @deps << dep
    end

    def conflicts_with(*names, because:)
      @fields[:conflicts_with] = [names, because]
    end

    def on_linux
      yield
    end

    def on_macos
      yield
    end

    def livecheck(&block)
      @fields[:livecheck] = block
    end

    def service(&block)
      @service_block = block
    end

    def test(&block)
      @test_block = block
    end
  end
end

# What a `service do` block may say, recorded.
class ServiceDSL
  attr_reader :said

  PREFIX = Pathname("/opt/homebrew")

  def initialize
    @said = {}
  end

  def opt_bin
    PREFIX/"opt/mlx-box/bin"
  end

  def var
    PREFIX/"var"
  end

  def etc
    PREFIX/"etc"
  end

  def std_service_path_env
    "#{PREFIX}/bin:#{PREFIX}/sbin:/usr/bin:/bin:/usr/sbin:/sbin"
  end

  %i[run keep_alive log_path error_log_path environment_variables process_type working_dir run_type
     interval require_root].each do |k|
    define_method(k) { |*args, **opts| @said[k] = opts.empty? ? (args.size == 1 ? args[0] : args) : opts }
  end
end

# What a `test do` block runs with: `bin` is the directory of the binary under test, `testpath` a
# scratch directory, as in `brew test`.
class TestRun
  attr_reader :bin, :testpath, :version

  def initialize(bin, testpath, version)
    @bin = Pathname(bin)
    @testpath = Pathname(testpath)
    @version = version
  end

  def shell_output(cmd, result = 0)
    out, status = Open3.capture2(ENV.to_h.merge("HOME" => testpath.to_s), cmd, chdir: testpath.to_s)
    raise "`#{cmd}` exited #{status.exitstatus}, expected #{result}:\n#{out}" if status.exitstatus != result

    out
  end

  def system(*cmd)
    Kernel.system(*cmd, chdir: testpath.to_s) || raise("`#{cmd.join(" ")}` failed")
  end

  def assert_match(expected, actual)
    ok = expected.is_a?(Regexp) ? expected.match?(actual) : actual.include?(expected.to_s)
    raise "expected #{expected.inspect} in:\n#{actual}" unless ok
  end

  def assert_equal(expected, actual)
    raise "expected #{expected.inspect}, got #{actual.inspect}" unless expected == actual
  end

  def assert_path_exists(path)
    File.exist?(path) || raise("#{path} does not exist")
  end
end

# A stand-in of Homebrew's cask DSL, recording each stanza.
class CaskDSL
  attr_reader :said

  def initialize
    @said = Hash.new { |h, k| h[k] = [] }
  end

  def appdir
    "/Applications"
  end

  def version(value = nil)
    value.nil? ? @said[:version].first : (@said[:version] << value)
  end

  %i[sha256 name desc homepage app binary zap uninstall depends_on conflicts_with caveats auto_updates
     url livecheck].each do |k|
    define_method(k) do |*args, **opts, &block|
      @said[k] << (block || (opts.empty? ? (args.size == 1 ? args[0] : args) : (args.empty? ? opts : [*args, opts])))
    end
  end
end

def cask(token, &block)
  $cask_token = token
  $cask = CaskDSL.new.tap { |c| c.instance_eval(&block) }
end

def https?(value)
  value.is_a?(String) && value.start_with?("https://")
end

def check_formula(path, bin)
  before = FORMULAE.dup
  load path
  classes = FORMULAE - before
  return problem("#{path}: defines no Formula subclass") if classes.size != 1

  f = classes.first
  want = File.basename(path, ".rb").split("-").map(&:capitalize).join
  problem("#{path}: class #{f.name}, Homebrew expects #{want} for this file name") if f.name != want
  fields = f.fields
  desc = fields[:desc]
  if !desc.is_a?(String) || desc.empty?
    problem("#{path}: no desc")
  else
    problem("#{path}: desc is over 80 characters") if desc.length > 80
    problem("#{path}: desc starts with an article") if desc.match?(/\A(an?|the)\s/i)
    problem("#{path}: desc ends with a full stop") if desc.end_with?(".")
  end
  problem("#{path}: no https homepage") unless https?(fields[:homepage])
  url = fields.dig(:url, 0)
  problem("#{path}: no https url") unless https?(url)
  problem("#{path}: sha256 is not 64 lowercase hex digits") unless SHA256.match?(fields[:sha256].to_s)
  problem("#{path}: no license") unless fields[:license].is_a?(String) && !fields[:license].empty?
  version = fields[:version] || url.to_s[/-(\d+(?:\.\d+)+)\.tar\.gz\z/, 1]
  problem("#{path}: no version in the url (mlx-box-VERSION.tar.gz)") unless version
  problem("#{path}: no `depends_on \"rust\" => :build`") unless f.deps.include?("rust" => :build)
  problem("#{path}: no install method") unless f.instance_methods(false).include?(:install)
  problem("#{path}: no test block") unless f.test_block
  if f.service_block
    s = ServiceDSL.new.tap { |d| d.instance_eval(&f.service_block) }.said
    run = Array(s[:run]).map(&:to_s)
    problem("#{path}: the service does not run `mlx-box up` (#{run.inspect})") unless run[0]&.end_with?("/bin/mlx-box") && run[1] == "up"
    problem("#{path}: the service has no keep_alive") unless s[:keep_alive]
    %i[log_path error_log_path].each { |k| problem("#{path}: the service has no #{k}") unless s[k] }
  else
    problem("#{path}: no service block (`brew services start mlx-box`)")
  end
  if bin && f.test_block && version
    Dir.mktmpdir("mlxbox-formula-test") do |dir|
      TestRun.new(bin, dir, version).instance_eval(&f.test_block)
      puts "ok   #{path}: its test block passes against #{bin}/mlx-box"
    rescue StandardError => e
      problem("#{path}: its test block fails against #{bin}/mlx-box: #{e.message}")
    end
  end
  puts "ok   #{path}: formula #{f.name} #{version}" if PROBLEMS.empty?
end

def check_cask(path, tauri_conf)
  $cask = nil
  load path
  c = $cask
  return problem("#{path}: defines no cask") unless c

  want = File.basename(path, ".rb")
  problem("#{path}: cask \"#{$cask_token}\", Homebrew expects \"#{want}\" for this file name") if $cask_token != want
  said = c.said
  %i[version sha256 url name desc homepage app].each do |k|
    problem("#{path}: no #{k}") if said[k].empty?
  end
  problem("#{path}: sha256 is not 64 lowercase hex digits") unless said[:sha256].empty? || SHA256.match?(said[:sha256].first.to_s)
  problem("#{path}: no https url") unless said[:url].empty? || https?(Array(said[:url].first).first)
  problem("#{path}: no https homepage") unless said[:homepage].empty? || https?(said[:homepage].first)
  desc = said[:desc].first.to_s
  problem("#{path}: desc starts with an article") if desc.match?(/\A(an?|the)\s/i)
  conf = JSON.parse(File.read(tauri_conf))
  bundle = "#{conf.fetch("productName")}.app"
  problem("#{path}: app #{said[:app].first.inspect}, the bundle tauri makes is #{bundle}") if said[:app].first != bundle
  sidecar = File.basename(Array(conf.dig("bundle", "externalBin")).first.to_s)
  daemon = "/Applications/#{bundle}/Contents/MacOS/#{sidecar}"
  unless said[:binary].any? { |b| Array(b).first == daemon }
    problem("#{path}: no `binary` for the daemon the app carries (#{daemon})")
  end
  zap = said[:zap].flat_map { |z| Array(z.is_a?(Hash) ? z[:trash] : nil) }
  problem("#{path}: zap does not trash the state dir") unless zap.include?("~/Library/Application Support/mlx-box")
  macos = said[:depends_on].find { |d| d.is_a?(Hash) && d[:macos] }
  problem("#{path}: no depends_on macos:") unless macos
  problem("#{path}: no caveats") if said[:caveats].empty?
  puts "ok   #{path}: cask #{$cask_token} #{said[:version].first}" if PROBLEMS.empty?
end

opts = { tauri_conf: File.expand_path("../../src-tauri/tauri.conf.json", __dir__) }
OptionParser.new do |o|
  o.on("--formula F") { |v| opts[:formula] = v }
  o.on("--cask C") { |v| opts[:cask] = v }
  o.on("--tauri-conf F") { |v| opts[:tauri_conf] = v }
  o.on("--bin DIR") { |v| opts[:bin] = v }
end.parse!
abort "usage: check.rb [--formula F] [--cask C] [--tauri-conf F] [--bin DIR]" unless opts[:formula] || opts[:cask]

begin
  check_formula(opts[:formula], opts[:bin]) if opts[:formula]
rescue ScriptError, StandardError => e
  problem("#{opts[:formula]}: does not evaluate as a formula: #{e.class}: #{e.message}")
end
begin
  check_cask(opts[:cask], opts[:tauri_conf]) if opts[:cask]
rescue ScriptError, StandardError => e
  problem("#{opts[:cask]}: does not evaluate as a cask: #{e.class}: #{e.message}")
end
PROBLEMS.each { |p| puts "FAIL #{p}" }
exit(PROBLEMS.empty? ? 0 : 1)
