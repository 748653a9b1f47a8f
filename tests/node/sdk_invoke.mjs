/*
 * Drives Sluice's Invoke API with the real AWS SDK for JavaScript v3 and checks what the SDK
 * makes of every answer: payloads, function errors, async and dry-run status codes, log tails,
 * and the exception classes of the error paths.
 *
 *   node sdk_invoke.mjs <broker-url>      (SLUICE_NODE_CACHE names the npm install)
 *
 * Prints one line per check and exits 1 at the first one that fails.
 */
import { createRequire } from "node:module";
import path from "node:path";

const cache = process.env.SLUICE_NODE_CACHE;
if (!cache) {
  console.error("SLUICE_NODE_CACHE is not set (tests/node/setup.sh installs the SDK there)");
  process.exit(2);
}
const require = createRequire(path.join(cache, "package.json"));
const sdk = await import(require.resolve("@aws-sdk/client-lambda"));
const { LambdaClient, InvokeCommand } = sdk;

const endpoint = process.argv[2];
const client = new LambdaClient({
  region: "us-east-1",
  endpoint,
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
  maxAttempts: 1,
});
const enc = new TextEncoder();
const dec = new TextDecoder();

function check(cond, what, detail) {
  if (!cond) {
    console.error("FAIL " + what + (detail !== undefined ? ": " + JSON.stringify(detail) : ""));
    process.exit(1);
  }
  console.log("ok " + what);
}

async function invoke(params) {
  return client.send(new InvokeCommand(params));
}

async function expectError(params, name, what) {
  try {
    const r = await invoke(params);
    check(false, what, { status: r.StatusCode });
  } catch (e) {
    check(e.name === name && e instanceof sdk[name], what, { name: e.name, message: e.message });
    return e;
  }
}

let r = await invoke({ FunctionName: "echo", Payload: enc.encode('{"via":"sdk"}') });
check(r.StatusCode === 200 && JSON.parse(dec.decode(r.Payload)).via === "sdk", "sync payload");
check(r.ExecutedVersion === "$LATEST" && r.FunctionError === undefined, "sync headers");

r = await invoke({ FunctionName: "echo", Payload: enc.encode("{}"), LogType: "Tail" });
const tail = Buffer.from(r.LogResult, "base64").toString();
check(tail.includes("REPORT RequestId:"), "log tail", tail);

r = await invoke({ FunctionName: "fail", Payload: enc.encode("{}") });
check(r.StatusCode === 200 && r.FunctionError === "Unhandled", "function error");
check(JSON.parse(dec.decode(r.Payload)).errorMessage === "always fails", "function error body");

r = await invoke({ FunctionName: "echo", InvocationType: "Event", Payload: enc.encode("{}") });
check(r.StatusCode === 202, "async 202", r.StatusCode);

r = await invoke({ FunctionName: "echo", InvocationType: "DryRun" });
check(r.StatusCode === 204, "dry run 204", r.StatusCode);

r = await invoke({
  FunctionName: "arn:aws:lambda:us-east-1:000000000000:function:echo",
  Qualifier: "$LATEST",
  Payload: enc.encode('{"arn":true}'),
});
check(JSON.parse(dec.decode(r.Payload)).arn === true, "ARN and qualifier");

const nf = await expectError({ FunctionName: "missing" }, "ResourceNotFoundException",
  "ResourceNotFoundException");
check(nf.$metadata.httpStatusCode === 404 && /Function not found/.test(nf.message),
  "404 message", nf.message);

await expectError({ FunctionName: "echo", Payload: new Uint8Array(6 * 1024 * 1024 + 10) },
  "RequestTooLargeException", "RequestTooLargeException (sync)");
await expectError({ FunctionName: "echo", InvocationType: "Event",
  Payload: new Uint8Array(1024 * 1024 + 10) }, "RequestTooLargeException",
  "RequestTooLargeException (async)");

/* Reserved concurrency 1: hold the slot with a slow call, the second is throttled. */
const slow = invoke({ FunctionName: "single", Payload: enc.encode("1500") });
let throttled = null;
for (let i = 0; i < 200 && !throttled; i++) {
  try {
    await invoke({ FunctionName: "single", Payload: enc.encode("1") });
  } catch (e) {
    throttled = e;
  }
}
check(throttled && throttled.name === "TooManyRequestsException" &&
  throttled instanceof sdk.TooManyRequestsException, "TooManyRequestsException",
  throttled && throttled.name);
check(throttled.Reason === "ReservedFunctionConcurrentInvocationLimitExceeded", "throttle Reason",
  throttled.Reason);
r = await slow;
check(r.StatusCode === 200, "slow call finished");
console.log("all SDK checks passed");
