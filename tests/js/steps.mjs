// What the client scripts share: reporting what they saw as one JSON line, and a push's outcome.

// A `finish(code, problem)` that prints `seen` (with `problem`, if any) and exits with `code`;
// it is called with "timed out" after `ms` if the script has not finished by then.
export function reporter(seen, ms = 15000) {
  function finish(code, problem) {
    if (problem) seen.problem = problem;
    process.stdout.write(JSON.stringify(seen) + "\n");
    process.exit(code);
  }
  setTimeout(() => finish(1, "timed out"), ms).unref();
  return finish;
}

// Push outcome as a value: {status, response} or {status: "timeout"}.
export function outcome(push) {
  return new Promise(resolve => push
    .receive("ok", response => resolve({status: "ok", response}))
    .receive("error", response => resolve({status: "error", response}))
    .receive("timeout", () => resolve({status: "timeout"})));
}
