// Calls to the console's API: JSON in and out, errors as ApiError with field violations.

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
    this.violations = error.violations || [];
  }
}

/** Called when an answer says the session is gone. */
export const hooks = {unauthenticated: () => {}};

/** GET or POST a JSON API route; returns the parsed answer. */
export async function api(path, {method = "GET", body} = {}) {
  const options = {method, credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/login") hooks.unauthenticated();
    throw new ApiError(response.status, data);
  }
  return data;
}

/**
 * Reads a streamed POST answer of Server-Sent Events; calls onData with each `data:` text.
 * Resolves when the stream ends.
 */
export async function postStream(path, body, onData, signal) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin", signal,
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    if (response.status === 401) hooks.unauthenticated();
    throw new ApiError(response.status, data);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) onData(line.slice(5).trim());
      }
    }
  }
}
