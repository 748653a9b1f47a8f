/* A handler for aws-lambda-ric in Sluice's integration tests: echoes the event and context. */
export const handler = async (event, context) => ({
  ok: true,
  event,
  requestId: context.awsRequestId,
  fn: context.functionName,
});
