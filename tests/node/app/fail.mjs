/* Throws, so aws-lambda-ric reports a function error with the exception's class name. */
export const handler = async (event) => {
  throw new TypeError("bad event: " + JSON.stringify(event));
};
