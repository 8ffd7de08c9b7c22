import type { Command } from 'commander';
import { UsageError } from '../exit.js';
import { print } from '../output.js';

/** Each command and its options, from the program itself: completions never drift from the parser. */
function table(program: Command): { commands: string[]; options: Map<string, string[]> } {
  const options = new Map<string, string[]>();
  const flags = (cmd: Command) => cmd.options.flatMap((o) => [o.short, o.long].filter((f): f is string => f !== undefined));
  options.set('', flags(program));
  for (const cmd of program.commands) options.set(cmd.name(), [...flags(cmd), '--help']);
  return { commands: [...program.commands.map((c) => c.name()), 'help'], options };
}

function bash(program: Command): string {
  const { commands, options } = table(program);
  const cases = [...options].filter(([name]) => name !== '').map(([name, opts]) => `    ${name}) opts="${opts.join(' ')}" ;;`);
  return `# execd completion for bash: eval "$(execd completion bash)" (or save it under bash-completion's completions/)
_execd() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmd="" i opts=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in -*) ;; *) cmd=\${COMP_WORDS[i]}; break ;; esac
  done
  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${options.get('')!.join(' ')}" -- "$cur"))
    else COMPREPLY=($(compgen -W "${commands.join(' ')}" -- "$cur")); fi
    return
  fi
  case $cmd in
${cases.join('\n')}
    help) COMPREPLY=($(compgen -W "${commands.join(' ')}" -- "$cur")); return ;;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")); return ;;
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi
}
complete -F _execd execd
`;
}

function zsh(program: Command): string {
  const { commands, options } = table(program);
  const cases = [...options].filter(([name]) => name !== '').map(([name, opts]) => `    ${name}) opts=(${opts.join(' ')}) ;;`);
  return `#compdef execd
# execd completion for zsh: eval "$(execd completion zsh)" (or save it as _execd in a directory of $fpath)
_execd() {
  local -a opts
  local cmd=\${words[2]}
  if (( CURRENT == 2 )); then
    if [[ $PREFIX == -* ]]; then compadd -- ${options.get('')!.join(' ')}; else compadd -- ${commands.join(' ')}; fi
    return
  fi
  case $cmd in
${cases.join('\n')}
    help) compadd -- ${commands.join(' ')}; return ;;
    completion) compadd -- bash zsh; return ;;
  esac
  if [[ $PREFIX == -* ]]; then compadd -- $opts; else _files; fi
}
if [[ $zsh_eval_context[-1] == loadautoload ]]; then _execd "$@"; else compdef _execd execd; fi
`;
}

export function registerCompletion(program: Command): Command {
  return program
    .command('completion')
    .description('a completion script: eval "$(execd completion bash)" (or zsh)')
    .argument('<shell>', 'bash or zsh')
    .action((shell: string) => {
      if (shell === 'bash') return print(bash(program));
      if (shell === 'zsh') return print(zsh(program));
      throw new UsageError(`completion for bash or zsh, not ${JSON.stringify(shell)}`);
    });
}
