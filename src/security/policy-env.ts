/**
 * Environment keys the policy treats specially (docs/security.md, "Environment",
 * lists the same groups with the same reasons: keep them in step).
 *
 * - CODE_LOADING: keys that make a program, its dynamic loader, its interpreter
 *   or a helper it starts run code or a command the caller chooses. Refused
 *   without a policy; under a policy, allowed only by a rule naming the key
 *   exactly (a glob is not enough).
 * - CONFIG_LOCATION: keys that point programs at another configuration or
 *   program directory, which runs commands only when the caller can also
 *   write files there. Pass without a policy (they are everyday settings, and
 *   without a policy a caller can run anything anyway); under a rule that
 *   restricts what runs, allowed only by a rule naming the key exactly.
 */

interface EnvGroup {
  /** Why the keys are here (docs/security.md says the same). */
  why: string;
  exact?: string[];
  /** Key families, case-sensitive (the loader and most programs are). */
  prefixes?: string[];
  /** Key families matched without regard to case (npm reads npm_config_* so). */
  prefixesAnyCase?: string[];
}

export const CODE_LOADING: EnvGroup[] = [
  {
    why: 'the dynamic loader loads and runs the libraries they name (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT…; DYLD_* on macOS)',
    prefixes: ['LD_', 'DYLD_'],
  },
  {
    why: 'glibc loads modules or reads files from these paths (character-set converters, locales, resolver and malloc hooks)',
    exact: ['GCONV_PATH', 'GETCONF_DIR', 'HOSTALIASES', 'LOCPATH', 'NLSPATH', 'RESOLV_HOST_CONF', 'MALLOC_TRACE'],
  },
  {
    why: 'shells run a file or a command from them at start-up or before each command, import functions from them, or pick up options from them',
    exact: ['BASH_ENV', 'ENV', 'ZDOTDIR', 'SHELLOPTS', 'BASHOPTS', 'PS0', 'PS1', 'PS2', 'PS3', 'PS4', 'PROMPT_COMMAND', 'CDPATH', 'GLOBIGNORE', 'FPATH', 'IFS'],
    prefixes: ['BASH_FUNC_'],
  },
  {
    why: 'programs run the program they name (an editor, a pager or its input filter, a browser, a password prompt)',
    exact: [
      'EDITOR', 'VISUAL', 'PAGER', 'MANPAGER', 'MANOPT', 'BROWSER', 'SUDO_ASKPASS', 'SUDO_EDITOR', 'SSH_ASKPASS',
      'LESSOPEN', 'LESSCLOSE', 'SYSTEMD_PAGER', 'SYSTEMD_EDITOR', 'FCEDIT',
    ],
  },
  {
    why: 'editors run the commands they hold (ex and vi commands such as :!cmd) or load scripts from the directory they name',
    exact: ['EXINIT', 'NEXINIT', 'VIMINIT', 'GVIMINIT', 'MYVIMRC', 'VIMRUNTIME', 'EMACSLOADPATH'],
  },
  {
    why: 'tar, rsync, version control and mail tools take options or commands from them: TAR_OPTIONS=--checkpoint-action=exec=…, RSYNC_RSH, GIT_SSH_COMMAND, GIT_CONFIG_* (core.sshCommand, core.fsmonitor), GIT_DIR (a repository whose config and hooks run commands), GIT_EXEC_PATH…',
    exact: ['TAR_OPTIONS', 'RSYNC_RSH', 'RSYNC_CONNECT_PROG', 'CVS_RSH', 'SVN_SSH', 'SVN_EDITOR', 'HGRCPATH', 'HGEDITOR', 'MAILRC', 'WGETRC'],
    prefixes: ['GIT_'],
  },
  {
    why: 'interpreters and runtimes load modules, start-up files or options (a preloaded module, an agent) from them',
    exact: [
      'PYTHONSTARTUP', 'PYTHONPATH', 'PYTHONHOME', 'PERL5OPT', 'PERL5LIB', 'PERLLIB', 'PERL5DB', 'RUBYOPT', 'RUBYLIB',
      'GEM_HOME', 'GEM_PATH', 'PHPRC', 'PHP_INI_SCAN_DIR', 'TCLLIBPATH', 'R_PROFILE', 'R_PROFILE_USER', 'R_ENVIRON', 'R_ENVIRON_USER',
      'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'JAVA_OPTS', 'JAVA_HOME', 'CLASSPATH',
      'MAVEN_OPTS', 'MAVEN_HOME', 'M2_HOME', 'GRADLE_OPTS', 'GRADLE_USER_HOME', 'ANT_OPTS', 'SBT_OPTS',
      'CORECLR_ENABLE_PROFILING', 'CORECLR_PROFILER', 'CORECLR_PROFILER_PATH',
    ],
    prefixes: ['NODE_', 'PYTHON', 'PERL', 'RUBY', 'LUA_', 'BUNDLE_', 'DOTNET_', 'COMPlus_'],
  },
  {
    why: 'package managers and build tools run the code, compilers or wrappers they point to (npm_config_script_shell, npm_config_node_options, a package index or toolchain to fetch and run, RUSTC_WRAPPER, MAKEFLAGS, CFLAGS=-fplugin=…)',
    exact: [
      'COREPACK_NPM_REGISTRY', 'COREPACK_HOME', 'GOFLAGS', 'GOENV', 'GOROOT', 'GOTOOLCHAIN', 'GOPROXY',
      'RUSTC', 'RUSTC_WRAPPER', 'RUSTC_WORKSPACE_WRAPPER', 'RUSTDOC', 'RUSTFLAGS', 'RUSTDOCFLAGS',
      'MAKEFLAGS', 'MFLAGS', 'GNUMAKEFLAGS', 'MAKEFILES', 'CC', 'CXX', 'CPP', 'LD', 'CFLAGS', 'CXXFLAGS', 'CPPFLAGS', 'LDFLAGS',
    ],
    prefixes: ['YARN_', 'PIP_', 'CARGO_', 'CGO_'],
    prefixesAnyCase: ['npm_config_'],
  },
  {
    why: 'libraries and tools load modules or run credential helpers from the files they name (OpenSSL engines, GTK/Qt/GIO modules, kubeconfig exec plugins, AWS credential_process, docker CLI plugins, terraform provider overrides)',
    exact: [
      'OPENSSL_CONF', 'OPENSSL_ENGINES', 'OPENSSL_MODULES', 'GIO_EXTRA_MODULES', 'GTK_MODULES', 'GTK_PATH', 'QT_PLUGIN_PATH',
      'KUBECONFIG', 'DOCKER_CONFIG', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'TF_CLI_CONFIG_FILE',
    ],
  },
];

export const CONFIG_LOCATION: EnvGroup[] = [
  {
    why: 'programs read their configuration from under them (~/.gitconfig, ~/.npmrc, ~/.ssh/config, ~/.bashrc, $XDG_CONFIG_HOME/…), and such files can run commands; or (PATH, SHELL) they choose which helper programs and shell a program starts',
    exact: ['HOME', 'XDG_CONFIG_HOME', 'XDG_CONFIG_DIRS', 'XDG_DATA_HOME', 'XDG_DATA_DIRS', 'GNUPGHOME', 'CURL_HOME', 'PATH', 'SHELL'],
  },
];

/** Keys a family above covers that only change output, names or dates: they load nothing. */
const HARMLESS = new Set([
  'NODE_ENV', 'NODE_NO_WARNINGS', 'NODE_DEBUG',
  'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING', 'PYTHONHASHSEED', 'PYTHONUTF8',
  'GIT_AUTHOR_NAME', 'GIT_AUTHOR_EMAIL', 'GIT_AUTHOR_DATE', 'GIT_COMMITTER_NAME', 'GIT_COMMITTER_EMAIL', 'GIT_COMMITTER_DATE',
  'GIT_TERMINAL_PROMPT', 'GIT_FLUSH', 'GIT_OPTIONAL_LOCKS',
  'DOTNET_CLI_TELEMETRY_OPTOUT', 'DOTNET_NOLOGO', 'CGO_ENABLED',
]);

interface Compiled {
  exact: Set<string>;
  prefixes: string[];
  prefixesAnyCase: string[];
}

function compileGroups(groups: EnvGroup[]): Compiled {
  return {
    exact: new Set(groups.flatMap((g) => g.exact ?? [])),
    prefixes: groups.flatMap((g) => g.prefixes ?? []),
    prefixesAnyCase: groups.flatMap((g) => (g.prefixesAnyCase ?? []).map((p) => p.toLowerCase())),
  };
}

function inGroups(c: Compiled, key: string): boolean {
  if (HARMLESS.has(key)) return false;
  if (c.exact.has(key) || c.prefixes.some((p) => key.startsWith(p))) return true;
  if (c.prefixesAnyCase.length === 0) return false;
  const lower = key.toLowerCase();
  return c.prefixesAnyCase.some((p) => lower.startsWith(p));
}

const CODE = compileGroups(CODE_LOADING);
const CONFIG = compileGroups(CONFIG_LOCATION);

/** True when setting `key` could make the child load code or run a command the caller chooses. */
export function loadsCode(key: string): boolean {
  return inGroups(CODE, key);
}

/** True when `key` points programs at another configuration or program directory (HOME, XDG_CONFIG_HOME, PATH…). */
export function choosesConfig(key: string): boolean {
  return inGroups(CONFIG, key);
}
