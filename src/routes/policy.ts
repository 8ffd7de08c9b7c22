import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { PolicyDecision } from '../schemas/policy.js';
import { CommandSpec } from '../schemas/run.js';
import { commandAudit } from '../security/admission.js';
import { toRunSpec } from '../spec/run-spec.js';

const policyRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/policy/explain',
    {
      schema: {
        operationId: 'explainPolicy',
        tags: ['run'],
        summary: 'Would this CommandSpec run, under which policy rule, and why',
        description:
          'Runs nothing: answers what POST /v1/run would decide for this token, with the identity, cwd, program file, timeout, kill grace, ' +
          'output cap and limits it would run with. A refusal is still 200 here (`allowed: false`); /v1/run and /v1/jobs answer it as 403 COMMAND_NOT_ALLOWED ' +
          'with the same `rule` and `reasons`.',
        body: CommandSpec,
        response: { 200: PolicyDecision, ...problems(...V1_ERRORS) },
      },
      config: { scope: ['run', 'jobs:write'] },
    },
    async (request) => {
      const { config, security } = { config: app.services.config, security: app.security };
      const spec = toRunSpec(request.body, config, { timeoutMs: config.syncTimeoutMs, allowStreamStdin: true });
      const decision = await security.policy.decide(request.principal!, spec);
      request.audit = { ...commandAudit(spec, decision, security.policy.defaultRunAs), explain: true };
      return security.policy.explain(decision, spec);
    },
  );
};

export default policyRoutes;
