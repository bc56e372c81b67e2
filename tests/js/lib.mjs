// The line protocol between a client script and its Go test
// (tests/jsclients_test.go): the script writes one JSON object per line on
// stdout ({"event": NAME, ...}); for an "authorize" event the Go test plays
// the user in the browser and answers with the redirect URL on stdin.
// Anything the libraries print goes to stderr.
import { createInterface } from 'node:readline';

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// config is the JSON object the test passes as the first argument.
export const config = JSON.parse(process.argv[2] ?? '{}');

export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

// authorize hands an authorization URL to the test and returns the URL the
// browser was redirected to (the client's redirect URI with code or error).
export async function authorize(step, url) {
  emit('authorize', { step, url: String(url) });
  const { value, done } = await lines.next();
  if (done) throw new Error(`stdin closed while waiting for the redirect of step ${step}`);
  return new URL(value);
}

// run runs the script's body; any exception fails the script (exit 1) with
// its stack on stderr, which the test shows.
export function run(body) {
  body().then(
    () => process.exit(0),
    (err) => {
      console.error(err?.stack ?? String(err));
      if (err?.cause !== undefined) console.error('cause:', err.cause);
      process.exit(1);
    },
  );
}

export function check(ok, message) {
  if (!ok) throw new Error(message);
}
