// The API on this page's own origin: the session's token, JSON calls, uploads with progress.
// The token lives in localStorage (never in a URL); every call sends it as a bearer header.

const TOKEN_KEY = "mp3conv.session";

/** An API error: the HTTP status and the API's stable code and sentence. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The signed-in session, or null: `{ token, email, expiresAt }` (expiresAt in ms). */
export function session() {
  try {
    const saved = JSON.parse(localStorage.getItem(TOKEN_KEY) || "null");
    if (saved && typeof saved.token === "string" && saved.expiresAt > Date.now() + 5000) {
      return saved;
    }
  } catch {
    // A damaged entry is the same as none.
  }
  localStorage.removeItem(TOKEN_KEY);
  return null;
}

/**
 * Forgets the session: on sign out, or when the API refused `token` (then only if that is
 * still the stored one: another tab may have signed in again meanwhile).
 */
export function forget(token) {
  if (token !== undefined) {
    const stored = session();
    if (stored && stored.token !== token) return;
  }
  localStorage.removeItem(TOKEN_KEY);
  for (const listener of signedOutListeners) listener();
}

const signedOutListeners = new Set();

/** Calls `listener` whenever the session ends (sign out, expiry, a 401). */
export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = response.statusText || "The server answered " + response.status + ".";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code || code);
      message = String(body.error.message || message);
    }
  } catch {
    // Not JSON: keep the status line.
  }
  if (response.status === 429 || response.status === 503) {
    const wait = response.headers.get("retry-after");
    if (wait) message += " Try again in " + wait + " s.";
  }
  return new ApiError(response.status, code, message);
}

/**
 * Calls the API. `body` is sent as JSON when given. Answers the parsed JSON, or null for an
 * empty answer. Throws ApiError; a 401 on an authenticated call also ends the session.
 */
export async function call(method, path, { body, auth = true, signal } = {}) {
  const headers = { Accept: "application/json" };
  const current = auth ? session() : null;
  if (auth) {
    if (!current) {
      forget();
      throw new ApiError(401, "signed_out", "Your session has ended. Please sign in again.");
    }
    headers.Authorization = "Bearer " + current.token;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "The server could not be reached. Check your connection.");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (auth && response.status === 401) forget(current.token);
    throw error;
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.startsWith("application/json") ? response.json() : null;
}

/** Signs in: stores the session and answers it. */
export async function signIn(email, password) {
  const answer = await call("POST", "/auth/login", { body: { email, password }, auth: false });
  const saved = {
    token: answer.access_token,
    email,
    expiresAt: Date.now() + answer.expires_in * 1000,
  };
  localStorage.setItem(TOKEN_KEY, JSON.stringify(saved));
  return saved;
}

/** Creates an account (the caller signs in after). */
export function register(email, password) {
  return call("POST", "/auth/register", { body: { email, password }, auth: false });
}

/** The MP3 of a done job, as a Blob (the audio route needs the bearer header). */
export async function audio(jobId) {
  const current = session();
  if (!current) {
    forget();
    throw new ApiError(401, "signed_out", "Your session has ended. Please sign in again.");
  }
  let response;
  try {
    response = await fetch("/v1/jobs/" + encodeURIComponent(jobId) + "/audio", {
      headers: { Authorization: "Bearer " + current.token },
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check your connection.");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) forget(current.token);
    throw error;
  }
  // Typed here, whatever the answer said: it is only ever played or saved as an MP3.
  return new Blob([await response.arrayBuffer()], { type: "audio/mpeg" });
}

/**
 * Uploads one file as a new job. The browser streams the file from disk (FormData with the
 * File), so a 2 GiB video is never read into the page's memory. `onProgress(sent, total)` as the
 * bytes go. Answers `{ promise, abort }`; the promise gives the job (202) or throws ApiError.
 */
export function upload(file, bitrate, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const current = session();
    if (!current) {
      forget();
      reject(new ApiError(401, "signed_out", "Your session has ended. Please sign in again."));
      return;
    }
    const form = new FormData();
    // The gateway reads options before the file.
    if (bitrate) form.append("bitrate", bitrate);
    form.append("file", file, file.name);
    xhr.open("POST", "/v1/jobs");
    xhr.setRequestHeader("Authorization", "Bearer " + current.token);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onload = () => {
      if (xhr.status === 202) {
        resolve(xhr.response);
        return;
      }
      const body = xhr.response;
      const code = body && body.error ? String(body.error.code) : "http_" + xhr.status;
      const message = body && body.error ? String(body.error.message) : "The upload failed (" + xhr.status + ").";
      if (xhr.status === 401) forget(current.token);
      reject(new ApiError(xhr.status, code, message));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload was cut off. Check your connection and try again."));
    xhr.onabort = () => reject(new ApiError(0, "cancelled", "Upload cancelled."));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
