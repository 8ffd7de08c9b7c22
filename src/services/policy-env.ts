/**
 * Environment variables that make a program, its dynamic loader or its
 * interpreter load code or configuration from a path the caller chooses.
 * A request may set them only when a policy rule names the key exactly.
 */
const EXACT = new Set([
  // shells
  'BASH_ENV',
  'ENV',
  'SHELLOPTS',
  'BASHOPTS',
  'PS4',
  'PROMPT_COMMAND',
  'CDPATH',
  'GLOBIGNORE',
  // glibc
  'GCONV_PATH',
  'GETCONF_DIR',
  'HOSTALIASES',
  'LOCPATH',
  'NLSPATH',
  'RESOLV_HOST_CONF',
  'MALLOC_TRACE',
  // interpreters and runtimes
  'NODE_OPTIONS',
  'NODE_PATH',
  'NODE_REPL_EXTERNAL_MODULE',
  'PYTHONSTARTUP',
  'PYTHONPATH',
  'PYTHONHOME',
  'PYTHONINSPECT',
  'PYTHONUSERBASE',
  'PYTHONEXECUTABLE',
  'PYTHONBREAKPOINT',
  'PERL5OPT',
  'PERL5LIB',
  'PERLLIB',
  'PERL5DB',
  'PERL_MB_OPT',
  'PERL_MM_OPT',
  'RUBYOPT',
  'RUBYLIB',
  'GEM_HOME',
  'GEM_PATH',
  'BUNDLE_GEMFILE',
  'LUA_INIT',
  'LUA_PATH',
  'LUA_CPATH',
  'PHPRC',
  'PHP_INI_SCAN_DIR',
  'TCLLIBPATH',
  'JAVA_TOOL_OPTIONS',
  '_JAVA_OPTIONS',
  'JDK_JAVA_OPTIONS',
  'CLASSPATH',
  'DOTNET_STARTUP_HOOKS',
  'GOFLAGS',
  'R_PROFILE',
  'R_PROFILE_USER',
  // libraries that load modules or run helpers
  'OPENSSL_CONF',
  'OPENSSL_ENGINES',
  'OPENSSL_MODULES',
  'GIO_EXTRA_MODULES',
  'GTK_MODULES',
  'GTK_PATH',
  'QT_PLUGIN_PATH',
  'GIT_EXEC_PATH',
  'GIT_SSH',
  'GIT_SSH_COMMAND',
  'GIT_ASKPASS',
  'SSH_ASKPASS',
  'GIT_PROXY_COMMAND',
  'GIT_EXTERNAL_DIFF',
  'GIT_PAGER',
  'GIT_EDITOR',
  'GIT_CONFIG',
  'GIT_CONFIG_GLOBAL',
  'GIT_CONFIG_SYSTEM',
  'GIT_CONFIG_PARAMETERS',
  'GIT_CONFIG_COUNT',
  'GIT_TEMPLATE_DIR',
  'PAGER',
  'EDITOR',
  'VISUAL',
  'SUDO_ASKPASS',
  'LESSOPEN',
  'LESSCLOSE',
  'MANPAGER',
  'BROWSER',
]);

/** Families: the dynamic loader (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT…), macOS's, bash exported functions, git config pairs. */
const PREFIXES = ['LD_', 'DYLD_', 'BASH_FUNC_', 'GIT_CONFIG_KEY_', 'GIT_CONFIG_VALUE_', 'NODE_', 'PYTHON', 'PERL', 'RUBY'];

/** Keys that stay allowed although a prefix above covers them (no code loading). */
const HARMLESS = new Set(['NODE_ENV', 'NODE_NO_WARNINGS', 'NODE_DEBUG', 'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING', 'PYTHONHASHSEED', 'PYTHONUTF8']);

/** True when setting `key` could make the child load code the caller chooses. */
export function loadsCode(key: string): boolean {
  if (HARMLESS.has(key)) return false;
  return EXACT.has(key) || PREFIXES.some((p) => key.startsWith(p));
}
