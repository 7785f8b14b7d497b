// The API on this page's own origin: the session's token, JSON calls, uploads with progress.
// The token lives in localStorage (never in a URL); every call sends it as a bearer header.

const TOKEN_KEY = "mp3conv.session";

/**
 * An API error: the HTTP status, the API's stable code and sentence, and the request field
 * at fault when the API names one (a conversion option).
 */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The error a JSON error body (`{ error: { code, message, field } }`) describes, or null. */
function errorFrom(status, body) {
  if (!body || !body.error) return null;
  const field = typeof body.error.field === "string" ? body.error.field : null;
  return new ApiError(status, String(body.error.code || "http_" + status), String(body.error.message || "The server answered " + status + "."), field);
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
  let error = null;
  try {
    error = errorFrom(response.status, await response.json());
  } catch {
    // Not JSON: keep the status line.
  }
  error ||= new ApiError(response.status, "http_" + response.status, response.statusText || "The server answered " + response.status + ".");
  if (response.status === 429 || response.status === 503) {
    const wait = response.headers.get("retry-after");
    if (wait) error.message += " Try again in " + wait + " s.";
  }
  return error;
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

/**
 * A file of a job's as a Blob of `type` (the routes need the bearer header, which a plain
 * link cannot send). Typed here, whatever the answer said: it is only ever played or saved
 * as that.
 */
async function jobFile(jobId, route, type) {
  const current = session();
  if (!current) {
    forget();
    throw new ApiError(401, "signed_out", "Your session has ended. Please sign in again.");
  }
  let response;
  try {
    response = await fetch("/v1/jobs/" + encodeURIComponent(jobId) + route, {
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
  return new Blob([await response.arrayBuffer()], { type });
}

/** The MP3 of a done job, as a Blob. */
export function audio(jobId) {
  return jobFile(jobId, "/audio", "audio/mpeg");
}

/** Track `number` of a done job split by chapters, as a Blob. */
export function track(jobId, number) {
  return jobFile(jobId, "/tracks/" + encodeURIComponent(number), "audio/mpeg");
}

/** Every track of a done job split by chapters, as one ZIP Blob. */
export function tracksZip(jobId) {
  return jobFile(jobId, "/tracks.zip", "application/zip");
}

/** The caller's presets, by name: `[{ name, options, created_at, updated_at }]`. */
export async function presets() {
  const answer = await call("GET", "/v1/presets");
  return answer && Array.isArray(answer.presets) ? answer.presets : [];
}

/** Saves `options` (an object of option fields) as the preset `name`, replacing one so named. */
export function savePreset(name, options) {
  return call("PUT", "/v1/presets/" + encodeURIComponent(name), { body: { options } });
}

/**
 * Uploads one file as a new job with `options` (`[[field, text], ...]`: only what the person
 * set). The browser streams the file from disk (FormData with the File), so a 2 GiB video is
 * never read into the page's memory. `onProgress(sent, total)` as the bytes go. Answers
 * `{ promise, abort }`; the promise gives the job (202) or throws ApiError.
 */
export function upload(file, options, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const current = session();
    if (!current) {
      forget();
      reject(new ApiError(401, "signed_out", "Your session has ended. Please sign in again."));
      return;
    }
    const form = new FormData();
    // Options first: the gateway takes them in any order, but this way it knows them
    // before the (long) file.
    for (const [field, text] of options) form.append(field, text);
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
      if (xhr.status === 401) forget(current.token);
      reject(errorFrom(xhr.status, xhr.response) || new ApiError(xhr.status, "http_" + xhr.status, "The upload failed (" + xhr.status + ")."));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload was cut off. Check your connection and try again."));
    xhr.onabort = () => reject(new ApiError(0, "cancelled", "Upload cancelled."));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
