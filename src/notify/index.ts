export { Notifier, callbackBody, type DeliveryOutcome, type NotifyConfig, type NotifierDeps } from './notifier.js';
export { checkNotifyUrl, type AllowedTarget, type AllowVerdict } from './allow.js';
export { classifyAddress, type AddressClass } from './address.js';
export { signature, tokenSecret } from './sign.js';
export type { AttemptResult, Resolver } from './deliver.js';
