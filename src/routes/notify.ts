import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Config } from '../config.js';
import { ApiError } from '../errors.js';
import { checkNotifyUrl, tokenSecret } from '../notify/index.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { NotifySecret, type NotifyRequest } from '../schemas/notify.js';

/** No secret to tell: a 404 (a 403 would read as a missing scope). */
const callbacksOff = () =>
  new ApiError('NOT_FOUND', 'completion callbacks are off on this server: EXECD_NOTIFY_ALLOW is empty (docs/notify.md)', { setting: 'EXECD_NOTIFY_ALLOW' });

/** POST /v1/jobs: a `notify.url` EXECD_NOTIFY_ALLOW does not admit is a 403 naming the setting, and the job is never queued. */
export function admitNotify(notify: NotifyRequest | undefined, config: Pick<Config, 'notifyAllow'>): void {
  if (notify === undefined) return;
  const verdict = checkNotifyUrl(notify.url, config.notifyAllow);
  if (!verdict.ok) throw new ApiError('FORBIDDEN', verdict.reason, { setting: 'EXECD_NOTIFY_ALLOW' });
}

const notifyRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config } = app.services;
  app.get(
    '/notify/secret',
    {
      config: { scope: 'jobs:write' },
      schema: {
        operationId: 'getNotifySecret',
        tags: ['jobs'],
        summary: "This token's completion-callback signing secret",
        description:
          'The key the callbacks of this token\'s jobs are signed with (`X-Execd-Signature`), for the receiver to check them: ' +
          'HMAC-SHA256 keyed with EXECD_NOTIFY_SECRET over `execd-notify-v1:<token id>`, in hex. 404 when callbacks are off (EXECD_NOTIFY_ALLOW empty). ' +
          'See docs/notify.md.',
        response: { 200: NotifySecret, ...problems(...V1_ERRORS, 404) },
      },
    },
    async (request) => {
      if (config.notifyAllow.length === 0 || config.notifySecret === undefined) throw callbacksOff();
      const tokenId = request.principal!.id;
      return {
        tokenId,
        secret: tokenSecret(config.notifySecret, tokenId),
        signatureHeader: 'X-Execd-Signature' as const,
        format: 't=<X-Execd-Timestamp, unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>',
      };
    },
  );
};

export default notifyRoutes;
