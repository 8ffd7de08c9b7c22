import { DomainError } from '../errors.js';

/** The command policy refused a command: `rule` names the rule, `reasons` carry every failed check. */
export class CommandNotAllowed extends DomainError {
  override name = 'CommandNotAllowed';
  readonly code = 'COMMAND_NOT_ALLOWED';
  constructor(message: string, details: { rule?: string; reasons?: string[] } = {}) {
    super(message, details);
  }
}
